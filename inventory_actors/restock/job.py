"""Running a restock job: check the whole file, then read it in chunks, validate and split each
by owning shard with Arrow, and send each shard its part as one durable command. A resumed job
skips the chunks its book counts done; a part's key (job, chunk, shard) makes a part sent twice
apply once while the shards keep it (docs/restock.md, How a job runs, Exactly once)."""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray.exceptions import RayError, RayTaskError

from inventory_actors.domain import RestockResult
from inventory_actors.restock.book import HEARTBEAT_SECONDS, JobProgress, JobSpec, first_rejects
from inventory_actors.restock.file_reader import (
    FileFormat,
    RestockFileError,
    RestockMode,
    check_file,
    content_digest,
    job_id_of,
    read_chunks,
    validate_chunk,
)
from inventory_actors.restock.partition import split_by_shard
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.errors import IdempotencyKeyReused, NotOwner, ServiceError
from inventory_actors.shard.partitioning import PartitionMap
from inventory_actors.shard.protocol import Outcome
from inventory_actors.shard.restock_chunk import RestockChunk

log = logging.getLogger(__name__)

ROWS_PER_CHUNK = 100_000
# How long a job keeps retrying a part whose shard is down before it fails.
RETRY_DEADLINE_SECONDS = 120.0
CALL_TIMEOUT_SECONDS = 60.0
_BACKOFF_FIRST_SECONDS = 0.2
_BACKOFF_MAX_SECONDS = 2.0
# A chunk sent whose end the book never recorded is sent again on resume only this soon after
# it was first sent: its shards keep its answer for their idempotency retention (24 h), less an
# hour for clocks that disagree and for a resumed job's retries.
RESUME_WITHIN_SECONDS = ShardConfig().idempotency_retention_seconds - 3_600.0

Source = str | Path | bytes
ShardCall = Callable[[RestockChunk], Any]  # sends a part; returns an ObjectRef of its Outcome
Reporter = Callable[[JobProgress], bool]  # False: stop, another runner has the job


class JobFailed(Exception):
    """The job cannot go on; the message says why (rows applied so far stay applied)."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def job_spec(
    source: Source,
    mode: str,
    file_format: str,
    source_name: str,
    job_id: str | None = None,
) -> JobSpec:
    """The job a file is: its id is the hash of its content and mode unless given."""
    restock_mode, fmt = RestockMode(mode), FileFormat(file_format)
    digest = content_digest(source, restock_mode)
    return JobSpec(
        job_id or job_id_of(digest), restock_mode.value, fmt.value, source_name, digest, None
    )


@dataclass
class _Part:
    chunk: RestockChunk
    ref: Any
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Chunk:
    """One chunk in flight: its parts, and the rejects found so far (validation's and the
    shards'), written out in row order once every part is in."""

    number: int
    rows_read: int
    parts: list[_Part]
    rejects: list[tuple[int, str]]


class JobRunner:
    """Runs one job against the shards; `run` returns the final progress or raises
    JobFailed."""

    def __init__(
        self,
        spec: JobSpec,
        partition: PartitionMap,
        send: ShardCall,
        report: Reporter,
        write_rejects: Callable[[list[tuple[int, str]]], None] | None = None,
        rows_per_chunk: int = ROWS_PER_CHUNK,
        retry_deadline_seconds: float = RETRY_DEADLINE_SECONDS,
        start: JobProgress | None = None,
        resume_within_seconds: float = RESUME_WITHIN_SECONDS,
    ) -> None:
        """`start`: where an earlier attempt got to, as the book has it (`JobBook.start`)."""
        self.spec = spec
        self._partition = partition
        self._send = send
        self._report = report
        self._write_rejects = write_rejects
        self._rows_per_chunk = rows_per_chunk
        self._retry_deadline_seconds = retry_deadline_seconds
        self._start = start or JobProgress(rows_total=spec.rows_total)
        self._resume_within_seconds = resume_within_seconds
        self.progress = self._start
        self._stopped = threading.Event()

    def run(self, source: Source) -> JobProgress:
        """Check the whole file, then apply the chunks after `start`'s; JobFailed if the file
        is refused (nothing applied) or the job cannot finish."""
        self._refuse_unknown_chunk()
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True)
        heartbeat.start()
        try:
            self._check(source)
            self._apply(source)
        finally:
            self._stopped.set()
            heartbeat.join()
        self.progress = self.progress._replace(
            rows_total=self.progress.rows_read, chunk_sent_at_ms=None
        )
        return self.progress

    def _apply(self, source: Source) -> None:
        in_flight: _Chunk | None = None
        try:
            for number, raw in enumerate(self._chunks(source)):
                if number < self._start.chunks_done:
                    continue  # applied by an earlier attempt: the book recorded it done
                prepared = self._prepare(number, raw)
                if in_flight is not None:
                    settling, in_flight = in_flight, None
                    self._settle(settling)
                self._before_send(number)
                in_flight = self._dispatch(prepared)
        except JobFailed:
            # The reading failed with a chunk at the shards: its answer is still counted, so
            # the job's counts say what was applied.
            if in_flight is not None:
                self._settle_quietly(in_flight)
            raise
        if in_flight is not None:
            self._settle(in_flight)

    def _settle_quietly(self, chunk: _Chunk) -> None:
        try:
            self._settle(chunk)
        except JobFailed as failure:
            log.warning("job %s: chunk %d: %s", self.spec.job_id, chunk.number, failure)

    def _check(self, source: Source) -> None:
        """The whole file is read before any row is applied: one that breaks anywhere is
        refused whole. Its row count must be the one it was submitted with."""
        try:
            rows = check_file(source, FileFormat(self.spec.file_format))
        except RestockFileError as error:
            raise JobFailed(f"the file was refused whole, nothing applied: {error}") from error
        expected = self.spec.rows_total
        if expected is not None and rows != expected:
            raise JobFailed(f"the file changed since it was submitted: {rows} rows, not {expected}")
        # The chunks the book counts done are skipped by number: they must be the same rows.
        done = self._start
        if done.rows_read != min(done.chunks_done * self._rows_per_chunk, rows):
            raise JobFailed(
                f"the book counts {done.chunks_done} chunks done with {done.rows_read} rows: "
                f"not chunks of {self._rows_per_chunk} rows of this file"
            )
        self.progress = self.progress._replace(rows_total=rows)

    def _chunks(self, source: Source) -> Iterator[pa.Table]:
        try:
            yield from read_chunks(source, FileFormat(self.spec.file_format), self._rows_per_chunk)
        except RestockFileError as error:  # it was sound when checked a moment ago
            raise JobFailed(f"the file changed while the job read it: {error}") from error

    def _refuse_unknown_chunk(self) -> None:
        """A chunk an earlier attempt sent without the book hearing how it ended is sent again
        only while its shards still keep its answer: past that, whether it applied is unknown,
        and sending it again could apply it twice."""
        sent_at_ms = self._start.chunk_sent_at_ms
        if sent_at_ms is None or _now_ms() - sent_at_ms < self._resume_within_seconds * 1000:
            return
        first = self._start.chunks_done * self._rows_per_chunk + 1
        hours = (_now_ms() - sent_at_ms) / 3_600_000
        raise JobFailed(
            f"the job cannot resume: its rows from row {first} (chunk {self._start.chunks_done}) "
            f"on were being sent {hours:.0f} h ago and how they ended was never recorded; the "
            "shards no longer remember, so sending them again might apply them twice. Rows "
            f"before row {first} are applied: check the rows from row {first} on, and restock "
            "what is missing as a new file"
        )

    def _before_send(self, number: int) -> None:
        """The book must always hold when the first chunk it does not count done was first
        sent, or an earlier time: that bounds how long the keys of every chunk in doubt last.
        It is recorded here, durably, before an attempt's first send when the book has no such
        time; after that each settled chunk's progress carries the time it settled, which is
        before the next chunk is sent, and the heartbeat reports it."""
        self._check_not_stopped()
        if self.progress.chunk_sent_at_ms is not None:
            return
        self.progress = self.progress._replace(chunk_sent_at_ms=_now_ms())
        backoff = _BACKOFF_FIRST_SECONDS
        deadline = time.monotonic() + self._retry_deadline_seconds
        while True:
            self._check_not_stopped()
            try:
                still_ours = self._report(self.progress)
                break
            except Exception as error:  # the jobs actor restarting or slow: try again
                if time.monotonic() > deadline:
                    raise JobFailed(f"the book of jobs did not record chunk {number}") from error
                log.warning("job %s: record retried: %r", self.spec.job_id, error)
                time.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_SECONDS)
        if not still_ours:
            self._stopped.set()
            self._check_not_stopped()

    def _prepare(self, number: int, raw: pa.Table) -> tuple[_Chunk, dict[int, pa.Table]]:
        good, rejected = validate_chunk(raw, RestockMode(self.spec.mode))
        rejects = list(
            zip(
                rejected.column("row").to_pylist(),
                rejected.column("reason").to_pylist(),
                strict=True,
            )
        )
        chunk = _Chunk(number, raw.num_rows, [], rejects)
        return chunk, split_by_shard(good, self._partition)

    def _dispatch(self, prepared: tuple[_Chunk, dict[int, pa.Table]]) -> _Chunk:
        chunk, tables = prepared
        spec = self.spec
        for shard_id, table in sorted(tables.items()):
            part = RestockChunk(spec.job_id, chunk.number, shard_id, spec.mode, spec.digest, table)
            chunk.parts.append(_Part(part, self._send(part)))
        return chunk

    def _settle(self, chunk: _Chunk) -> None:
        applied = 0
        for part in chunk.parts:
            result = self._await_part(part)
            applied += result.applied
            chunk.rejects.extend(result.rejects)
        chunk.rejects.sort()
        if self._write_rejects is not None and chunk.rejects:
            self._write_rejects(chunk.rejects)
        progress = self.progress
        self.progress = progress._replace(
            rows_read=progress.rows_read + chunk.rows_read,
            rows_applied=progress.rows_applied + applied,
            rows_rejected=progress.rows_rejected + len(chunk.rejects),
            chunks_done=progress.chunks_done + 1,
            rejects=first_rejects(progress.rejects, chunk.rejects),
            # The next chunk is sent after this, if there is one (a bound, not the time).
            chunk_sent_at_ms=_now_ms(),
        )

    def _await_part(self, part: _Part) -> RestockResult:
        """The part's result, retrying it (same key) while its shard is unavailable."""
        backoff = _BACKOFF_FIRST_SECONDS
        deadline = time.monotonic() + self._retry_deadline_seconds
        while True:
            try:
                outcome: Outcome = ray.get(part.ref, timeout=CALL_TIMEOUT_SECONDS)
                value: object = outcome.value
            except RayError as error:
                value = error
            if isinstance(value, RestockResult):
                return value
            self._fail_unless_retryable(part, value, deadline)
            log.warning("job %s: part %s retried: %r", self.spec.job_id, _name(part), value)
            self._check_not_stopped()
            time.sleep(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX_SECONDS)
            part.ref = self._send(part.chunk)

    def _fail_unless_retryable(self, part: _Part, value: object, deadline: float) -> None:
        if isinstance(value, IdempotencyKeyReused):
            raise JobFailed(
                f"job id {self.spec.job_id} was used before for a different file or mode"
            )
        if isinstance(value, NotOwner):
            # The part went to a shard that does not own its rows: the same map would send it
            # there again, so a retry cannot help.
            raise JobFailed(f"part {_name(part)} was misrouted: {value.detail}")
        # The shard died, restarted or did not answer, or refused for now (down, recovering,
        # overloaded, a failed write): the part's outcome is unknown or nil, and its key makes
        # sending it again safe. An exception raised inside the call is a bug: not retried.
        retryable = (isinstance(value, RayError) and not isinstance(value, RayTaskError)) or (
            isinstance(value, ServiceError) and not isinstance(value, IdempotencyKeyReused)
        )
        if not retryable:
            raise JobFailed(f"part {_name(part)} was refused: {value}")
        if time.monotonic() > deadline:
            raise JobFailed(
                f"shard {part.chunk.shard_id} unavailable for "
                f"{self._retry_deadline_seconds:.0f} s: {value}"
            )

    def _heartbeat(self) -> None:
        """Report progress at least every HEARTBEAT_SECONDS, even while a part waits on a
        shard that is down, so the job's lease holds."""
        while not self._stopped.wait(HEARTBEAT_SECONDS):
            try:
                still_ours = self._report(self.progress)
            except Exception:
                log.exception("job %s: progress report failed", self.spec.job_id)
                continue
            if not still_ours:
                log.warning("job %s: another runner took over; stopping", self.spec.job_id)
                self._stopped.set()

    def _check_not_stopped(self) -> None:
        if self._stopped.is_set():
            raise JobFailed("another runner took over this job")


def _name(part: _Part) -> str:
    return f"{part.chunk.chunk}/shard {part.chunk.shard_id}"
