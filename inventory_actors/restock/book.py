"""The book of restock jobs: which job runs, how far it got, how it ended.

A job id names one file (its digest) for good. One runner at a time per job, by lease: a job
whose lease lapsed was interrupted, and the next submission resumes it after the chunks the
book counts done, which are never sent again (docs/restock.md, Exactly once)."""

import heapq
from collections.abc import Callable, Iterable
from itertools import chain
from typing import NamedTuple

from persistence.jobs_store import REJECTS_KEPT, JobRecord, JobsStore

HEARTBEAT_SECONDS = 1.0
LEASE_SECONDS = 5.0
INTERRUPTED = "interrupted: its runner stopped reporting; submit the same file again to resume"


class JobSpec(NamedTuple):
    """What a job is: its id, how its rows apply and where they come from."""

    job_id: str
    mode: str
    file_format: str
    source: str
    digest: str
    rows_total: int | None = None


class JobProgress(NamedTuple):
    """How far a job got: always at a chunk boundary (the first `chunks_done` chunks are done,
    the counts are theirs), and a time no later than the first send of any chunk after them
    (None: none was sent)."""

    rows_total: int | None = None
    rows_read: int = 0
    rows_applied: int = 0
    rows_rejected: int = 0
    chunks_done: int = 0
    rejects: tuple[tuple[int, str], ...] = ()
    chunk_sent_at_ms: int | None = None


class Begun(NamedTuple):
    """The job's record; `attempt` is set when the caller is to run it (None: it has
    succeeded already, or another runner holds it, or `reused`: the job id belongs to
    another file or mode, and nothing runs)."""

    record: JobRecord
    attempt: int | None
    reused: bool = False


def progress_of(record: JobRecord) -> JobProgress:
    return JobProgress(
        record.rows_total,
        record.rows_read,
        record.rows_applied,
        record.rows_rejected,
        record.chunks_done,
        record.rejects,
        record.chunk_sent_at_ms,
    )


def first_rejects(
    kept: tuple[tuple[int, str], ...], more: Iterable[tuple[int, str]]
) -> tuple[tuple[int, str], ...]:
    """The first REJECTS_KEPT rejects by row number, of those kept and `more`."""
    return tuple(heapq.nsmallest(REJECTS_KEPT, chain(kept, more)))


class JobBook:
    """Job records and their state changes, over a store and a clock (no Ray here)."""

    def __init__(self, store: JobsStore, clock_ms: Callable[[], int]) -> None:
        self._store = store
        self._clock_ms = clock_ms

    def get(self, job_id: str) -> JobRecord | None:
        record = self._store.get(job_id)
        return None if record is None else self._as_seen(record)

    def recent(self, limit: int) -> list[JobRecord]:
        return [self._as_seen(record) for record in self._store.recent(limit)]

    def _as_seen(self, record: JobRecord) -> JobRecord:
        """A running job with a lapsed lease is reported as failed (interrupted)."""
        if record.status == "running" and record.lease_until_ms < self._clock_ms():
            return record._replace(status="failed", error=INTERRUPTED)
        return record

    def begin(self, spec: JobSpec) -> Begun:
        """Start or resume `spec`'s job, unless its id is another file's, it succeeded or it
        runs. A resumed job keeps its progress: its runner starts after the chunks done."""
        now_ms = self._clock_ms()
        current = self.get(spec.job_id)
        if current is not None and current.digest != spec.digest:
            return Begun(current, None, reused=True)
        if current is not None and current.status in ("succeeded", "running"):
            return Begun(current, None)
        if current is None:
            progress = JobProgress(rows_total=spec.rows_total)
            attempt, created = 1, now_ms
        else:
            progress = progress_of(current)
            if spec.rows_total is not None:
                progress = progress._replace(rows_total=spec.rows_total)
            attempt, created = current.attempt + 1, current.created_at_ms
        record = _with_progress(
            JobRecord(
                job_id=spec.job_id,
                status="running",
                mode=spec.mode,
                file_format=spec.file_format,
                source=spec.source,
                digest=spec.digest,
                rows_total=None,
                rows_read=0,
                rows_applied=0,
                rows_rejected=0,
                chunks_done=0,
                rejects=(),
                error=None,
                attempt=attempt,
                created_at_ms=created,
                updated_at_ms=now_ms,
                finished_at_ms=None,
                lease_until_ms=now_ms + int(LEASE_SECONDS * 1000),
            ),
            progress,
        )
        self._store.put(record)
        return Begun(record, attempt)

    def start(self, job_id: str, attempt: int) -> JobProgress | None:
        """Where `attempt`'s runner starts (renewing its lease), from the book rather than from
        what it was given, so a runner retried by Ray resumes where the job got to; None when
        `attempt` no longer runs the job."""
        record = self._running(job_id, attempt)
        if record is None:
            return None
        now_ms = self._clock_ms()
        self._store.put(
            record._replace(updated_at_ms=now_ms, lease_until_ms=now_ms + int(LEASE_SECONDS * 1000))
        )
        return progress_of(record)

    def report(self, job_id: str, attempt: int, progress: JobProgress) -> bool:
        """Record progress and renew the lease; False when `attempt` is no longer the job's
        runner (its lease lapsed and another attempt began): it should stop."""
        record = self._running(job_id, attempt)
        if record is None:
            return False
        now_ms = self._clock_ms()
        renewed = _with_progress(record, progress)._replace(
            updated_at_ms=now_ms, lease_until_ms=now_ms + int(LEASE_SECONDS * 1000)
        )
        self._store.put(renewed)
        return True

    def finish(
        self, job_id: str, attempt: int, progress: JobProgress, error: str | None
    ) -> JobRecord | None:
        """The job ends: succeeded without `error`, failed with it. None (nothing recorded)
        when `attempt` no longer runs the job."""
        record = self._running(job_id, attempt)
        if record is None:
            return None
        now_ms = self._clock_ms()
        finished = _with_progress(record, progress)._replace(
            status="failed" if error else "succeeded",
            error=error,
            updated_at_ms=now_ms,
            finished_at_ms=now_ms,
        )
        self._store.put(finished)
        return finished

    def _running(self, job_id: str, attempt: int) -> JobRecord | None:
        """The job's record as stored, if `attempt` is running it (a lapsed lease still counts
        until another attempt begins)."""
        record = self._store.get(job_id)
        if record is None or record.attempt != attempt or record.status != "running":
            return None
        return record


def _with_progress(record: JobRecord, progress: JobProgress) -> JobRecord:
    if progress.chunks_done < record.chunks_done:
        # A report overtaken by a later one (the heartbeat's and the runner's own cross): the
        # book never moves back, or a resumed job would send done chunks again.
        return record
    sent_at_ms = progress.chunk_sent_at_ms
    if progress.chunks_done == record.chunks_done and record.chunk_sent_at_ms is not None:
        # The earliest time given for the same chunks is what the keys' life counts from.
        sent_at_ms = min(record.chunk_sent_at_ms, sent_at_ms or record.chunk_sent_at_ms)
    return record._replace(
        rows_total=record.rows_total if progress.rows_total is None else progress.rows_total,
        rows_read=progress.rows_read,
        rows_applied=progress.rows_applied,
        rows_rejected=progress.rows_rejected,
        chunks_done=progress.chunks_done,
        rejects=progress.rejects,
        chunk_sent_at_ms=sent_at_ms,
    )
