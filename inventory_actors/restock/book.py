"""The book of restock jobs: which job runs, how far it got, how it ended.

One runner at a time per job, by lease (`HEARTBEAT_SECONDS`): a job whose lease lapsed was
interrupted, and the next submission takes it over. The chunks' idempotency keys make a job
exactly once; the lease only saves work (docs/restock.md, Exactly once)."""

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
    rows_total: int | None = None
    rows_read: int = 0
    rows_applied: int = 0
    rows_rejected: int = 0
    chunks_done: int = 0
    rejects: tuple[tuple[int, str], ...] = ()


class Begun(NamedTuple):
    """The job's record; `attempt` is set when the caller is to run it (None: it has
    succeeded already, or another runner holds it)."""

    record: JobRecord
    attempt: int | None


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
        now_ms = self._clock_ms()
        current = self.get(spec.job_id)
        if current is not None and current.status in ("succeeded", "running"):
            return Begun(current, None)
        attempt = 1 if current is None else current.attempt + 1
        created = now_ms if current is None else current.created_at_ms
        record = JobRecord(
            spec.job_id,
            "running",
            spec.mode,
            spec.file_format,
            spec.source,
            spec.digest,
            spec.rows_total,
            0,
            0,
            0,
            0,
            (),
            None,
            attempt,
            created,
            now_ms,
            None,
            now_ms + int(LEASE_SECONDS * 1000),
        )
        self._store.put(record)
        return Begun(record, attempt)

    def report(self, job_id: str, attempt: int, progress: JobProgress) -> bool:
        """Record progress and renew the lease; False when `attempt` is no longer the job's
        runner (its lease lapsed and another attempt began): it should stop."""
        record = self._store.get(job_id)
        if record is None or record.attempt != attempt or record.status != "running":
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
        """The job ends: succeeded without `error`, failed with it."""
        record = self._store.get(job_id)
        if record is None or record.attempt != attempt:
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


def _with_progress(record: JobRecord, progress: JobProgress) -> JobRecord:
    return record._replace(
        rows_total=record.rows_total if progress.rows_total is None else progress.rows_total,
        rows_read=progress.rows_read,
        rows_applied=progress.rows_applied,
        rows_rejected=progress.rows_rejected,
        chunks_done=progress.chunks_done,
        rejects=progress.rejects,
    )
