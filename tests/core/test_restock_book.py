"""The book of restock jobs: one runner at a time by lease, attempts, and records that survive a
restart of their file."""

from pathlib import Path

from inventory_actors.restock.book import (
    INTERRUPTED,
    LEASE_SECONDS,
    JobBook,
    JobProgress,
    JobSpec,
    first_rejects,
)
from persistence.jobs_store import JOBS_FILE, REJECTS_KEPT, JobsStore

SPEC = JobSpec("rj-1", "delta", "parquet", "stock.parquet", "d" * 64, 1_000)
LEASE_MS = int(LEASE_SECONDS * 1000)


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000_000

    def __call__(self) -> int:
        return self.now_ms


def book(tmp_path: Path, clock: Clock) -> JobBook:
    return JobBook(JobsStore(tmp_path / JOBS_FILE), clock)


def test_a_new_job_begins_as_attempt_one_and_reports_progress(tmp_path: Path) -> None:
    clock = Clock()
    jobs = book(tmp_path, clock)
    begun = jobs.begin(SPEC)
    assert begun.attempt == 1
    assert begun.record.status == "running"
    assert begun.record.rows_total == 1_000
    progress = JobProgress(1_000, 400, 390, 10, 1, ((3, "sku: bad"),))
    assert jobs.report("rj-1", 1, progress)
    record = jobs.get("rj-1")
    assert record is not None
    assert (record.rows_read, record.rows_applied, record.rows_rejected) == (400, 390, 10)
    assert record.rejects == ((3, "sku: bad"),)


def test_a_running_job_is_not_begun_twice_until_its_lease_lapses(tmp_path: Path) -> None:
    clock = Clock()
    jobs = book(tmp_path, clock)
    jobs.begin(SPEC)
    assert jobs.begin(SPEC).attempt is None
    clock.now_ms += LEASE_MS - 1
    assert jobs.report("rj-1", 1, JobProgress())  # renews the lease
    clock.now_ms += LEASE_MS - 1
    assert jobs.begin(SPEC).attempt is None
    clock.now_ms += 2
    seen = jobs.get("rj-1")
    assert seen is not None
    assert (seen.status, seen.error) == ("failed", INTERRUPTED)
    taken = jobs.begin(SPEC)
    assert taken.attempt == 2
    # The first runner learns it lost the job, and its end is not recorded.
    assert not jobs.report("rj-1", 1, JobProgress())
    assert jobs.finish("rj-1", 1, JobProgress(), None) is None
    finished = jobs.finish("rj-1", 2, JobProgress(1_000, 1_000, 1_000, 0, 1), None)
    assert finished is not None
    assert finished.status == "succeeded"


def test_a_succeeded_job_is_never_begun_again_and_a_failed_one_is(tmp_path: Path) -> None:
    clock = Clock()
    jobs = book(tmp_path, clock)
    jobs.begin(SPEC)
    jobs.finish("rj-1", 1, JobProgress(1_000, 10, 0, 0, 0), "shard 2 unavailable for 120 s")
    retried = jobs.begin(SPEC)
    assert retried.attempt == 2
    jobs.finish("rj-1", 2, JobProgress(1_000, 1_000, 1_000, 0, 1), None)
    again = jobs.begin(SPEC)
    assert again.attempt is None
    assert again.record.status == "succeeded"
    assert again.record.created_at_ms == retried.record.created_at_ms


def test_records_survive_reopening_their_file(tmp_path: Path) -> None:
    clock = Clock()
    jobs = book(tmp_path, clock)
    jobs.begin(SPEC)
    jobs.finish("rj-1", 1, JobProgress(1_000, 1_000, 998, 2, 1, ((1, "a"), (9, "b"))), None)
    reopened = book(tmp_path, clock)
    record = reopened.get("rj-1")
    assert record is not None
    assert record.status == "succeeded"
    assert record.rejects == ((1, "a"), (9, "b"))
    assert [r.job_id for r in reopened.recent(10)] == ["rj-1"]
    assert reopened.get("rj-2") is None


def test_only_the_first_rejects_by_row_are_kept() -> None:
    kept = first_rejects((), [(row, "x") for row in range(500, 0, -1)])
    assert [row for row, _ in kept] == list(range(1, REJECTS_KEPT + 1))
    assert first_rejects(kept, [(0, "y")])[0] == (0, "y")
    assert len(first_rejects(kept, [(0, "y")])) == REJECTS_KEPT
