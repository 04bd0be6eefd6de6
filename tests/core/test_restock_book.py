"""The book of restock jobs: one runner at a time by lease, attempts, a job id bound to its file
for good, resumed attempts that start after the chunks done, and records that survive a restart
of their file."""

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlite_utils

from inventory_actors.restock.book import (
    INTERRUPTED,
    LEASE_SECONDS,
    JobBook,
    JobProgress,
    JobSpec,
    first_rejects,
)
from persistence.jobs_store import JOBS_FILE, REJECTS_KEPT, JobsStore, _create_v1

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


OTHER_FILE = SPEC._replace(digest="e" * 64, source="other.parquet")


def running(jobs: JobBook, clock: Clock) -> None:
    jobs.begin(SPEC)


def failed(jobs: JobBook, clock: Clock) -> None:
    jobs.begin(SPEC)
    jobs.finish("rj-1", 1, JobProgress(1_000, 100, 100, 0, 1), "shard 1 unavailable for 120 s")


def interrupted(jobs: JobBook, clock: Clock) -> None:
    jobs.begin(SPEC)
    clock.now_ms += LEASE_MS + 1


def succeeded(jobs: JobBook, clock: Clock) -> None:
    jobs.begin(SPEC)
    jobs.finish("rj-1", 1, JobProgress(1_000, 1_000, 1_000, 0, 1), None)


@pytest.mark.parametrize("state", [running, failed, interrupted, succeeded])
def test_a_job_id_is_bound_to_its_files_digest_for_good(
    tmp_path: Path, state: Callable[[JobBook, Clock], None]
) -> None:
    clock = Clock()
    jobs = book(tmp_path, clock)
    state(jobs, clock)
    before = jobs.get("rj-1")
    assert before is not None
    for book_now in (jobs, book(tmp_path, clock)):  # also once its file is opened again
        refused = book_now.begin(OTHER_FILE)
        assert refused.reused
        assert refused.attempt is None
        assert book_now.get("rj-1") == before
    assert not jobs.begin(SPEC).reused


def test_a_resumed_attempt_keeps_the_progress_of_the_chunks_done(tmp_path: Path) -> None:
    clock = Clock()
    jobs = book(tmp_path, clock)
    jobs.begin(SPEC)
    assert jobs.start("rj-1", 1) == JobProgress(rows_total=1_000)
    sent_at = clock.now_ms
    progress = JobProgress(1_000, 200, 190, 10, 2, ((7, "sku: missing"),), sent_at)
    assert jobs.report("rj-1", 1, progress)
    jobs.finish("rj-1", 1, progress, "shard 0 unavailable for 120 s")
    clock.now_ms += 1_000
    resumed = jobs.begin(SPEC)
    assert resumed.attempt == 2
    record = resumed.record
    assert (record.status, record.error, record.finished_at_ms) == ("running", None, None)
    assert (record.chunks_done, record.rows_read, record.rows_applied) == (2, 200, 190)
    assert record.chunk_sent_at_ms == sent_at
    # The runner starts from the book, whatever it was given: a retried one too.
    assert jobs.start("rj-1", 2) == progress
    assert jobs.start("rj-1", 1) is None


def test_the_book_never_moves_back_nor_forgets_when_a_chunk_was_first_sent(
    tmp_path: Path,
) -> None:
    clock = Clock()
    jobs = book(tmp_path, clock)
    jobs.begin(SPEC)
    sent_at = clock.now_ms

    def recorded() -> tuple[int, int | None]:
        record = jobs.get("rj-1")
        assert record is not None
        return record.chunks_done, record.chunk_sent_at_ms

    assert jobs.report("rj-1", 1, JobProgress(1_000, 300, 300, 0, 3, (), sent_at))
    # A heartbeat read before that checkpoint, arriving after it: the lease is renewed only.
    clock.now_ms += 10
    assert jobs.report("rj-1", 1, JobProgress(1_000, 200, 200, 0, 2))
    assert recorded() == (3, sent_at)
    record = jobs.get("rj-1")
    assert record is not None and record.lease_until_ms == clock.now_ms + LEASE_MS
    # A report of the same chunks without the send time, or a later one, keeps the first.
    assert jobs.report("rj-1", 1, JobProgress(1_000, 300, 300, 0, 3))
    assert jobs.report("rj-1", 1, JobProgress(1_000, 300, 300, 0, 3, (), sent_at + 5))
    assert recorded() == (3, sent_at)
    # The chunk done: the next one is not sent yet.
    assert jobs.report("rj-1", 1, JobProgress(1_000, 400, 400, 0, 4))
    assert recorded() == (4, None)


def test_an_attempt_that_no_longer_runs_the_job_records_nothing(tmp_path: Path) -> None:
    clock = Clock()
    jobs = book(tmp_path, clock)
    jobs.begin(SPEC)
    done = JobProgress(1_000, 1_000, 1_000, 0, 1)
    assert jobs.finish("rj-1", 1, done, None) is not None
    # Its runner run again by force, or its task's watcher: the success stands.
    assert jobs.finish("rj-1", 1, JobProgress(), "runner failed") is None
    assert not jobs.report("rj-1", 1, JobProgress())
    assert jobs.start("rj-1", 1) is None
    record = jobs.get("rj-1")
    assert record is not None and record.status == "succeeded"


def test_a_book_of_the_first_schema_is_migrated_and_keeps_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / JOBS_FILE
    connection = sqlite3.connect(path, isolation_level=None)
    _create_v1(sqlite_utils.Database(connection))
    connection.execute(
        "INSERT INTO jobs VALUES ('rj-old', 'failed', 'delta', 'csv', 'old.csv', 'abc', 10, 5, 5, "
        "0, 1, '[]', 'interrupted', 1, 1, 2, 3, 4)"
    )
    connection.execute("PRAGMA user_version = 1")
    connection.close()
    jobs = JobBook(JobsStore(path), Clock())
    record = jobs.get("rj-old")
    assert record is not None
    assert (record.chunks_done, record.chunk_sent_at_ms, record.digest) == (1, None, "abc")
    assert jobs.begin(SPEC).attempt == 1
