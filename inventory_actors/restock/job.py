"""Running a restock job: read the file in chunks, validate and split each chunk by owning shard
with Arrow, and send each shard its part (Arrow data through the object store) as one durable
command. A part's idempotency key (job, chunk, shard) makes a re-run apply it once; a shard gets
a job's parts one at a time, in chunk order, while the next chunk is read and split
(docs/restock.md, How a job runs)."""

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import ray
from ray.exceptions import RayError, RayTaskError

from inventory_actors.domain import RestockResult
from inventory_actors.restock.book import HEARTBEAT_SECONDS, JobProgress, JobSpec, first_rejects
from inventory_actors.restock.file_reader import (
    FileFormat,
    RestockMode,
    content_digest,
    job_id_of,
    read_chunks,
    validate_chunk,
)
from inventory_actors.restock.partition import split_by_shard
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

Source = str | Path | bytes
ShardCall = Callable[[RestockChunk], Any]  # sends a part; returns an ObjectRef of its Outcome
Reporter = Callable[[JobProgress], bool]  # False: stop, another runner has the job


class JobFailed(Exception):
    """The job cannot go on; the message says why (rows applied so far stay applied)."""


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
    ) -> None:
        self.spec = spec
        self._partition = partition
        self._send = send
        self._report = report
        self._write_rejects = write_rejects
        self._rows_per_chunk = rows_per_chunk
        self._retry_deadline_seconds = retry_deadline_seconds
        self.progress = JobProgress(rows_total=spec.rows_total)
        self._stopped = threading.Event()

    def run(self, source: Source) -> JobProgress:
        heartbeat = threading.Thread(target=self._heartbeat, daemon=True)
        heartbeat.start()
        try:
            in_flight: _Chunk | None = None
            for number, raw in enumerate(self._chunks(source)):
                prepared = self._prepare(number, raw)
                if in_flight is not None:
                    self._settle(in_flight)
                self._check_not_stopped()
                in_flight = self._dispatch(prepared)
            if in_flight is not None:
                self._settle(in_flight)
        finally:
            self._stopped.set()
            heartbeat.join()
        self.progress = self.progress._replace(rows_total=self.progress.rows_read)
        return self.progress

    def _chunks(self, source: Source) -> Iterator[pa.Table]:
        try:
            yield from read_chunks(source, FileFormat(self.spec.file_format), self._rows_per_chunk)
        except ValueError as error:  # RestockFileError: the file as a whole is unreadable
            raise JobFailed(str(error)) from error

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


class RejectsFile:
    """Every rejected row (row, reason) as CSV, written as they are found."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._writer: pa_csv.CSVWriter | None = None

    def write(self, rejects: list[tuple[int, str]]) -> None:
        rows, reasons = zip(*rejects, strict=True)
        table = pa.table({"row": pa.array(rows, pa.int64()), "reason": pa.array(reasons)})
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pa_csv.CSVWriter(str(self.path), table.schema)
        self._writer.write_table(table)
        self.rows += len(rejects)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
