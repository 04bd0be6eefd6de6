"""A restock job's runner before it sends anything: a broken file, a book that does not match the
file's chunks, and a chunk whose outcome can no longer be known are refused with nothing sent.
No Ray: the runner is handed a `send` that records the parts (tests/actors runs it for real)."""

import time
from typing import Any

import pytest

from inventory_actors.restock.book import JobProgress
from inventory_actors.restock.job import JobFailed, JobRunner, job_spec
from inventory_actors.shard.partitioning import PartitionMap
from inventory_actors.shard.restock_chunk import RestockChunk

ROWS = 3_000
CHUNK_ROWS = 1_000


def csv_file(rows: int, last_row: str | None = None) -> bytes:
    lines = ["sku,location,quantity", *[f"S-{i},L1,1" for i in range(rows)]]
    if last_row is not None:
        lines[-1] = last_row
    return ("\n".join(lines) + "\n").encode()


def runner(content: bytes, sent: list[RestockChunk], start: JobProgress | None = None) -> JobRunner:
    def send(part: RestockChunk) -> Any:
        sent.append(part)
        raise AssertionError("nothing is sent")

    return JobRunner(
        job_spec(content, "delta", "csv", "stock.csv"),
        PartitionMap.initial(2),
        send,
        lambda _: True,
        rows_per_chunk=CHUNK_ROWS,
        start=start,
    )


def test_a_file_that_breaks_after_its_first_chunk_is_refused_with_nothing_sent() -> None:
    sent: list[RestockChunk] = []
    job = runner(csv_file(ROWS, "S-x,L1,1,extra"), sent)
    with pytest.raises(JobFailed, match=r"refused whole, nothing applied: .* at data row 3000"):
        job.run(csv_file(ROWS, "S-x,L1,1,extra"))
    assert sent == []
    assert job.progress.rows_applied == 0


def test_a_book_whose_chunks_done_are_not_this_files_chunks_is_refused() -> None:
    """A resume skips the chunks done by number: the rows they hold must be what the book
    counted (another chunk size would skip other rows)."""
    sent: list[RestockChunk] = []
    start = JobProgress(ROWS, 500, 500, 0, 1)
    with pytest.raises(JobFailed, match="not chunks of 1000 rows"):
        runner(csv_file(ROWS), sent, start).run(csv_file(ROWS))
    assert sent == []


def test_a_chunk_sent_longer_ago_than_its_keys_last_is_not_sent_again() -> None:
    sent: list[RestockChunk] = []
    day_ago_ms = time.time_ns() // 1_000_000 - 86_400_000
    start = JobProgress(ROWS, 1_000, 1_000, 0, 1, (), day_ago_ms)
    with pytest.raises(JobFailed, match=r"cannot resume: its rows from row 1001 \(chunk 1\) on"):
        runner(csv_file(ROWS), sent, start).run(csv_file(ROWS))
    assert sent == []
