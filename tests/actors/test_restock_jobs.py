"""Restock jobs end to end on a real Ray cluster: files read by a Ray task, parts applied by
real shard actors to real SQLite files, shards and the job's driver killed with SIGKILL, broken
files refused whole, job ids bound to their files, resumes after the chunks' keys expired."""

import os
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import ray

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import LineRequest
from inventory_actors.restock.book import Begun, JobProgress, JobSpec
from inventory_actors.restock.job import (
    RESUME_WITHIN_SECONDS,
    RETRY_DEADLINE_SECONDS,
    JobFailed,
    JobRunner,
    job_spec,
)
from inventory_actors.restock.runtime import jobs_actor, restock_task
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.partitioning import PartitionMap, shard_path
from inventory_actors.shard.protocol import Outcome, ShardStatus
from inventory_actors.shard.restock_chunk import RestockChunk
from inventory_cli.restock import restock_command
from persistence.jobs_store import JobRecord
from tests.conftest import ClientFactory, wait_for

pytestmark = pytest.mark.ray

ROWS = 100_000


def stock_file(path: Path, rows: int, skus: int, locations: int, seed: int = 1) -> pa.Table:
    """`rows` rows over `skus` x `locations` levels, written as Parquet or CSV by suffix."""
    index = pa.array(range(rows), pa.int64())

    def ids(prefix: str, numbers: Any) -> Any:
        return pc.binary_join_element_wise(prefix, pc.cast(numbers, pa.string()), "")

    table = pa.table(
        {
            "sku": ids("S-", pc.remainder(pc.multiply(index, seed), skus)),
            "location": ids("L", pc.remainder(pc.divide(index, skus), locations)),
            "quantity": pc.add(pc.remainder(index, 9), 1),
        }
    )
    write(table, path)
    return table


def write(table: pa.Table, path: Path) -> None:
    if path.suffix == ".csv":
        pa_csv.write_csv(table, path)
    else:
        pq.write_table(table, path, row_group_size=30_000)


def expected_on_hand(table: pa.Table, mode: str) -> dict[tuple[str, str], int]:
    expected: dict[tuple[str, str], int] = {}
    for sku, location, quantity in zip(
        table.column("sku").to_pylist(),
        table.column("location").to_pylist(),
        table.column("quantity").to_pylist(),
        strict=True,
    ):
        key = (sku, location)
        expected[key] = expected.get(key, 0) + quantity if mode == "delta" else quantity
    return expected


def on_hand(client: InventoryClient, skus: list[str]) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for view in client.get_skus(skus):
        assert view is not None
        for level in view.locations:
            found[(view.sku, level.location)] = level.on_hand
    return found


def run_job(
    client: InventoryClient,
    path: Path,
    mode: str,
    data_dir: Path,
    namespace: str,
    rejects: Path | None = None,
    job_id: str | None = None,
) -> JobRecord:
    fmt = "csv" if path.suffix == ".csv" else "parquet"
    spec = job_spec(path, mode, fmt, path.name, job_id)
    jobs = jobs_actor(data_dir, namespace)
    begun: Begun = ray.get(jobs.begin.remote(spec))
    if begun.attempt is None:
        return begun.record
    ref = restock_task.remote(
        spec,
        begun.attempt,
        str(path),
        str(data_dir),
        namespace,
        None if rejects is None else str(rejects),
    )
    record: JobRecord | None = ray.get(ref, timeout=300)
    assert record is not None
    return record


Cluster = tuple[InventoryClient, Path, str]


def start_cluster(
    make_client: ClientFactory, tmp_path: Path, config: ShardConfig | None = None
) -> Iterator[Cluster]:
    namespace = f"restock-{os.getpid()}-{tmp_path.name}"[:60]
    data_dir = tmp_path / "data"
    client = make_client(shard_count=3, data_dir=data_dir, namespace=namespace, config=config)
    yield client, data_dir, namespace
    ray.kill(jobs_actor(data_dir, namespace), no_restart=True)


@pytest.fixture
def cluster(make_client: ClientFactory, tmp_path: Path) -> Iterator[Cluster]:
    yield from start_cluster(make_client, tmp_path)


@pytest.fixture
def forgetful_cluster(make_client: ClientFactory, tmp_path: Path) -> Iterator[Cluster]:
    """Shards that forget idempotency records after a second (a day in production)."""
    config = ShardConfig(idempotency_retention_seconds=1.0, housekeeping_interval_seconds=0.2)
    yield from start_cluster(make_client, tmp_path, config)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_file_applies_in_both_modes_and_totals_match(
    cluster: tuple[InventoryClient, Path, str], tmp_path: Path, suffix: str
) -> None:
    client, data_dir, namespace = cluster
    delta_file = tmp_path / f"delta{suffix}"
    table = stock_file(delta_file, ROWS, skus=2_000, locations=5)
    record = run_job(client, delta_file, "delta", data_dir, namespace)
    assert (record.status, record.rows_read, record.rows_applied) == ("succeeded", ROWS, ROWS)
    assert record.rows_rejected == 0
    skus = sorted(set(table.column("sku").to_pylist()))
    expected = expected_on_hand(table, "delta")
    assert on_hand(client, skus) == expected
    assert sum(expected.values()) == pc.sum(table.column("quantity")).as_py()

    set_file = tmp_path / f"count{suffix}"
    counts = stock_file(set_file, ROWS, skus=2_000, locations=5, seed=3)
    counts = counts.set_column(2, "quantity", pc.remainder(pa.array(range(ROWS)), 13))
    write(counts, set_file)
    record = run_job(client, set_file, "set", data_dir, namespace)
    assert (record.status, record.rows_applied, record.rows_rejected) == ("succeeded", ROWS, 0)
    assert on_hand(client, skus) == expected_on_hand(counts, "set")


def test_the_same_file_again_is_the_same_job_and_applies_nothing(
    cluster: tuple[InventoryClient, Path, str], tmp_path: Path
) -> None:
    client, data_dir, namespace = cluster
    path = tmp_path / "stock.parquet"
    table = stock_file(path, 20_000, skus=500, locations=2)
    first = run_job(client, path, "delta", data_dir, namespace)
    again = run_job(client, path, "delta", data_dir, namespace)
    assert again.job_id == first.job_id
    assert again.attempt == 1
    skus = sorted(set(table.column("sku").to_pylist()))
    assert on_hand(client, skus) == expected_on_hand(table, "delta")
    # Even run again by force (a new attempt of a job that did not succeed, say): the shards'
    # chunk records answer, nothing applies twice, and the counts are the same.
    spec = job_spec(path, "delta", "parquet", path.name)
    forced = ray.get(restock_task.remote(spec, 1, str(path), str(data_dir), namespace, None))
    assert forced is None or forced.rows_applied == 20_000
    assert on_hand(client, skus) == expected_on_hand(table, "delta")


BAD_ROWS = [
    ("", "L1", "5", None, "sku"),
    ("has space", "L1", "5", None, "sku"),
    ("S-1", "", "5", None, "location"),
    ("S-1", "bad!loc", "5", None, "location"),
    ("S-1", "L1", "", None, "quantity"),
    ("S-1", "L1", "abc", None, "quantity"),
    ("S-1", "L1", "1.5", None, "quantity"),
    ("S-1", "L1", "0", None, "quantity"),
    ("S-1", "L1", "99999999999999999999999999", None, "quantity"),
    ("S-1", "L1", "5", "stolen", "reason"),
    ("S-9", "L1", "-1000", None, "insufficient-stock"),
]


def test_bad_rows_are_reported_each_with_its_reason_and_good_rows_apply(
    cluster: tuple[InventoryClient, Path, str], tmp_path: Path
) -> None:
    client, data_dir, namespace = cluster
    client.adjust("S-9", "L1", 10)
    client.reserve([LineRequest("S-9", 4, "L1")])
    lines = ["sku,location,quantity,reason"]
    good: dict[tuple[str, str], int] = {}
    bad_rows: dict[int, str] = {}
    for index in range(1_000):
        row = index + 1
        if index % 50 == 7:
            sku, location, quantity, reason, column = BAD_ROWS[(index // 50) % len(BAD_ROWS)]
            bad_rows[row] = column
            lines.append(f"{sku},{location},{quantity},{reason or ''}")
            continue
        sku, location = f"G-{index % 40}", f"L{index % 3}"
        good[(sku, location)] = good.get((sku, location), 0) + 2
        lines.append(f"{sku},{location},2,")
    path = tmp_path / "mixed.csv"
    path.write_text("\n".join(lines) + "\n")
    rejects = tmp_path / "mixed.rejects.csv"
    record = run_job(client, path, "delta", data_dir, namespace, rejects=rejects)
    assert record.status == "succeeded"
    assert record.rows_read == 1_000
    assert record.rows_rejected == len(bad_rows)
    assert record.rows_applied == 1_000 - len(bad_rows)
    reported = dict(record.rejects)
    assert set(reported) == set(bad_rows)
    for row, column in bad_rows.items():
        assert reported[row].startswith(column), (row, reported[row])
    written = pa_csv.read_csv(rejects)
    assert written.column("row").to_pylist() == sorted(bad_rows)
    assert on_hand(client, sorted({sku for sku, _ in good})) == good
    view = client.get_sku("S-9")
    assert view is not None
    assert [(level.on_hand, level.reserved) for level in view.locations] == [(10, 4)]
    assert client.get_sku("S-1") is None


def _restock_cli(path: Path, data_dir: Path, namespace: str, *extra: str) -> subprocess.Popen[str]:
    address = ray.get_runtime_context().gcs_address
    command = restock_command(path, data_dir, namespace, address, *extra)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _shard_pids(client: InventoryClient) -> list[int]:
    return [s.pid for s in client.status() if isinstance(s, ShardStatus)]


def test_killing_a_shard_and_the_driver_mid_job_then_rerunning_applies_every_row_once(
    cluster: tuple[InventoryClient, Path, str], tmp_path: Path
) -> None:
    client, data_dir, namespace = cluster
    path = tmp_path / "big.parquet"
    # Big enough that the job is still running when the shard has restarted (600,000 rows
    # could be done in a second and a half, before the kill took effect).
    rows = 1_500_000
    table = stock_file(path, rows, skus=3_000, locations=4)
    spec = job_spec(path, "delta", "parquet", path.name)
    jobs = jobs_actor(data_dir, namespace)
    first = _restock_cli(path, data_dir, namespace)

    def applied() -> int:
        record = ray.get(jobs.get.remote(spec.job_id))
        return 0 if record is None else record.rows_applied

    wait_for(lambda: applied() > 0, 120, "the job to apply its first chunk")
    os.kill(_shard_pids(client)[1], signal.SIGKILL)
    at_kill = applied()
    # The driver dies as soon as the job has gone on past the shard's restart: early enough
    # that most of the file is still to do, however fast this machine applies it.
    wait_for(lambda: applied() > at_kill, 120, "the job to go on after the shard restarted")
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    partly = applied()
    assert partly < rows, "the job ended before its driver was killed: make the file bigger"

    second = _restock_cli(path, data_dir, namespace)
    output, _ = second.communicate(timeout=300)
    assert second.returncode == 0, output
    record: JobRecord = ray.get(jobs.get.remote(spec.job_id))
    assert (record.status, record.rows_read, record.rows_applied) == ("succeeded", rows, rows)
    assert record.attempt >= 2
    skus = sorted(set(table.column("sku").to_pylist()))
    assert on_hand(client, skus) == expected_on_hand(table, "delta")
    # The shards' own records agree: every part applied once, no matter how often it was sent.
    for status in client.status():
        assert isinstance(status, ShardStatus)


def run_cli_to_end(path: Path, data_dir: Path, namespace: str, *extra: str) -> str:
    process = _restock_cli(path, data_dir, namespace, *extra)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    return output


def two_files(tmp_path: Path) -> tuple[Path, Path, pa.Table]:
    """Two files of the same levels with different quantities, and the first one's rows."""
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    table = stock_file(first, 1_000, skus=100, locations=2)
    write(table.set_column(2, "quantity", pa.array([3] * 1_000, pa.int64())), second)
    return first, second, table


def run_cli_refused(path: Path, data_dir: Path, namespace: str, *extra: str) -> str:
    process = _restock_cli(path, data_dir, namespace, *extra)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2, output
    return output


def test_the_cli_reports_a_summary_and_refuses_a_job_id_reused_for_another_file(
    cluster: Cluster, tmp_path: Path
) -> None:
    client, data_dir, namespace = cluster
    first, second, table = two_files(tmp_path)
    output = run_cli_to_end(first, data_dir, namespace, "--job-id", "nightly-1")
    assert "job nightly-1: succeeded" in output
    assert "1,000 applied" in output
    output = run_cli_refused(second, data_dir, namespace, "--job-id", "nightly-1")
    assert "job id nightly-1 was used before for a different file or mode" in output
    assert "(that job succeeded: a.parquet, delta mode); nothing applied" in output
    # The other mode is other content too.
    output = run_cli_refused(first, data_dir, namespace, "--job-id", "nightly-1", "--mode", "set")
    assert "job id nightly-1 was used before for a different file or mode" in output
    skus = sorted(set(table.column("sku").to_pylist()))
    assert on_hand(client, skus) == expected_on_hand(table, "delta")
    # The first file again is its finished job: answered, never run again.
    output = run_cli_to_end(first, data_dir, namespace, "--job-id", "nightly-1")
    assert "job nightly-1: succeeded (attempt 1)" in output
    assert on_hand(client, skus) == expected_on_hand(table, "delta")


def test_a_job_id_sent_again_with_other_content_fails_and_applies_none_of_it(
    cluster: tuple[InventoryClient, Path, str], tmp_path: Path
) -> None:
    client, data_dir, namespace = cluster
    first, second, table = two_files(tmp_path)
    run_job(client, first, "delta", data_dir, namespace, job_id="reused-1")
    spec = job_spec(second, "delta", "parquet", second.name, "reused-1")
    runner = JobRunner(
        spec,
        client.partition,
        lambda part: client.shards[part.shard_id].restock.remote(part),
        lambda _: True,
    )
    with pytest.raises(JobFailed, match="used before for a different file"):
        runner.run(second)
    assert runner.progress.rows_applied == 0
    skus = sorted(set(table.column("sku").to_pylist()))
    assert on_hand(client, skus) == expected_on_hand(table, "delta")


def test_a_job_that_splits_by_a_wrong_map_fails_at_once_and_applies_nothing(
    cluster: tuple[InventoryClient, Path, str], tmp_path: Path
) -> None:
    """Every part reaches a shard that does not own its rows: each shard refuses, and the job
    fails without retrying (the same map would send the part to the same shard again)."""
    client, _, _ = cluster
    first, _, table = two_files(tmp_path)
    count = client.partition.shard_count
    shifted = PartitionMap(count, tuple((shard + 1) % count for shard in client.partition.slots))
    spec = job_spec(first, "delta", "parquet", first.name, "misrouted-1")
    runner = JobRunner(
        spec,
        shifted,
        lambda part: client.shards[part.shard_id].restock.remote(part),
        lambda _: True,
        retry_deadline_seconds=300.0,
    )
    with pytest.raises(JobFailed, match="misrouted"):
        runner.run(first)
    assert runner.progress.rows_applied == 0
    skus = sorted(set(table.column("sku").to_pylist()))
    assert client.get_skus(skus) == [None] * len(skus)


# -- a file that breaks after its first chunk ------------------------------------------------------

BROKEN_ROWS = 150_000  # one chunk and a half: the task's chunks are 100,000 rows


def broken_and_fixed_csv(tmp_path: Path) -> tuple[Path, Path, pa.Table]:
    """A CSV whose last row has a cell too many, and the same file with that row mended."""
    fixed = tmp_path / "fixed.csv"
    table = stock_file(fixed, BROKEN_ROWS, skus=1_000, locations=3)
    broken = tmp_path / "broken.csv"
    text = fixed.read_text()
    assert text.endswith("\n")
    broken.write_text(text[:-1] + ",9\n")
    return broken, fixed, table


def test_the_cli_refuses_a_file_broken_past_its_first_chunk_then_applies_it_fixed_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    client, data_dir, namespace = cluster
    broken, fixed, table = broken_and_fixed_csv(tmp_path)
    skus = sorted(set(table.column("sku").to_pylist()))
    output = run_cli_refused(broken, data_dir, namespace, "--job-id", "po-991")
    assert "broken.csv refused, nothing applied" in output
    assert f"at data row {BROKEN_ROWS}: CSV parse error: Expected 3 columns, got 4" in output
    assert client.get_skus(skus) == [None] * len(skus)
    # Refused before the job existed: its id is free for the mended file.
    assert ray.get(jobs_actor(data_dir, namespace).get.remote("po-991")) is None
    output = run_cli_to_end(fixed, data_dir, namespace, "--job-id", "po-991")
    assert f"job po-991: succeeded (attempt 1): {BROKEN_ROWS:,} rows read" in output
    assert on_hand(client, skus) == expected_on_hand(table, "delta")


def test_a_job_given_a_file_that_breaks_after_its_first_chunk_applies_none_of_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The job's task checks the whole file too, whoever submitted it."""
    client, data_dir, namespace = cluster
    broken, fixed, table = broken_and_fixed_csv(tmp_path)
    skus = sorted(set(table.column("sku").to_pylist()))
    record = run_job(client, broken, "delta", data_dir, namespace)
    assert record.status == "failed"
    assert record.error is not None
    assert "refused whole, nothing applied" in record.error
    assert f"at data row {BROKEN_ROWS}" in record.error
    assert (record.rows_applied, record.chunks_done) == (0, 0)
    assert client.get_skus(skus) == [None] * len(skus)
    record = run_job(client, fixed, "delta", data_dir, namespace)
    assert (record.status, record.rows_applied) == ("succeeded", BROKEN_ROWS)
    assert on_hand(client, skus) == expected_on_hand(table, "delta")


# -- resuming a failed job -----------------------------------------------------------------------

CHUNK_ROWS = 1_000


def runner_for(
    client: InventoryClient,
    spec: JobSpec,
    data_dir: Path,
    namespace: str,
    attempt: int,
    send: Callable[[RestockChunk], object] | None = None,
    retry_deadline_seconds: float = RETRY_DEADLINE_SECONDS,
    resume_within_seconds: float = RESUME_WITHIN_SECONDS,
) -> JobRunner:
    """A runner of `attempt` that reports to the jobs actor and starts where its book says, as
    the job's task does, with chunks of CHUNK_ROWS."""
    jobs = jobs_actor(data_dir, namespace)
    start: JobProgress | None = ray.get(jobs.start.remote(spec.job_id, attempt))
    assert start is not None

    def report(progress: JobProgress) -> bool:
        return bool(ray.get(jobs.report.remote(spec.job_id, attempt, progress)))

    return JobRunner(
        spec,
        client.partition,
        send or (lambda part: client.shards[part.shard_id].restock.remote(part)),
        report,
        rows_per_chunk=CHUNK_ROWS,
        retry_deadline_seconds=retry_deadline_seconds,
        start=start,
        resume_within_seconds=resume_within_seconds,
    )


def fail_after_the_first_chunk(
    client: InventoryClient, spec: JobSpec, path: Path, data_dir: Path, namespace: str
) -> JobRecord:
    """Attempt 1 applies chunk 0; chunk 1's shards are down, and the job fails."""

    def send(part: RestockChunk) -> object:
        if part.chunk == 0:
            return client.shards[part.shard_id].restock.remote(part)
        return ray.put(Outcome(ShardUnavailable(part.shard_id, "down")))

    jobs = jobs_actor(data_dir, namespace)
    begun: Begun = ray.get(jobs.begin.remote(spec))
    assert begun.attempt == 1
    runner = runner_for(client, spec, data_dir, namespace, 1, send, retry_deadline_seconds=0.0)
    with pytest.raises(JobFailed, match="unavailable") as failure:
        runner.run(path)
    finished: JobRecord | None = ray.get(
        jobs.finish.remote(spec.job_id, 1, runner.progress, str(failure.value))
    )
    assert finished is not None
    assert (finished.status, finished.chunks_done, finished.rows_read) == ("failed", 1, CHUNK_ROWS)
    return finished


def stored_keys(data_dir: Path, shard_count: int, pattern: str) -> int:
    """Idempotency records whose key is LIKE `pattern`, in every shard's own file."""
    count = 0
    for shard_id in range(shard_count):
        connection = sqlite3.connect(f"file:{shard_path(data_dir, shard_id)}?mode=ro", uri=True)
        try:
            query = "SELECT count(*) FROM idempotency WHERE key LIKE ?"
            count += connection.execute(query, (pattern,)).fetchone()[0]
        finally:
            connection.close()
    return count


@pytest.mark.parametrize("mode", ["delta", "set"])
def test_a_failed_job_resumed_after_its_chunks_keys_expired_applies_them_never_again(
    forgetful_cluster: Cluster, tmp_path: Path, mode: str
) -> None:
    client, data_dir, namespace = forgetful_cluster
    path = tmp_path / "stock.parquet"
    # Every level once: a level of chunk 0 changes again only if chunk 0 applies again.
    table = stock_file(path, 3 * CHUNK_ROWS, skus=3 * CHUNK_ROWS, locations=1)
    spec = job_spec(path, mode, "parquet", path.name)
    fail_after_the_first_chunk(client, spec, path, data_dir, namespace)
    # A change after the failure, to a level of the chunk done: a count must not undo it.
    first_sku, first_location = table.column("sku")[0].as_py(), table.column("location")[0].as_py()
    client.adjust(first_sku, first_location, 1_000)
    shards = client.partition.shard_count
    assert stored_keys(data_dir, shards, f"restock:{spec.job_id}:0:%") > 0
    wait_for(
        lambda: stored_keys(data_dir, shards, f"restock:{spec.job_id}:0:%") == 0,
        60,
        "the shards to forget the keys of the chunk done",
    )

    begun: Begun = ray.get(jobs_actor(data_dir, namespace).begin.remote(spec))
    assert begun.attempt == 2
    runner = runner_for(client, spec, data_dir, namespace, 2)
    progress = runner.run(path)
    assert (progress.rows_read, progress.rows_applied, progress.chunks_done) == (3_000, 3_000, 3)
    expected = expected_on_hand(table, mode)
    expected[(first_sku, first_location)] += 1_000
    skus = sorted(set(table.column("sku").to_pylist()))
    assert on_hand(client, skus) == expected


def test_a_chunk_sent_but_never_recorded_done_is_not_sent_again_once_its_keys_may_be_gone(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Chunk 1 was sent when its job failed, and how it ended is unknown: once its shards may
    have forgotten it (a day in production), the job does not resume, rather than risk
    applying it twice."""
    client, data_dir, namespace = cluster
    path = tmp_path / "stock.parquet"
    table = stock_file(path, 3 * CHUNK_ROWS, skus=600, locations=2)
    spec = job_spec(path, "delta", "parquet", path.name)
    failed = fail_after_the_first_chunk(client, spec, path, data_dir, namespace)
    assert failed.chunk_sent_at_ms is not None
    skus = sorted(set(table.column("sku").to_pylist()))
    after_first = on_hand(client, skus)
    jobs = jobs_actor(data_dir, namespace)
    begun: Begun = ray.get(jobs.begin.remote(spec))
    assert begun.attempt == 2
    runner = runner_for(client, spec, data_dir, namespace, 2, resume_within_seconds=0.0)
    with pytest.raises(
        JobFailed, match=r"cannot resume: its rows from row 1001 \(chunk 1\) on"
    ) as failure:
        runner.run(path)
    assert on_hand(client, skus) == after_first
    # The next attempt starts from the same point: the first send of the chunk is kept.
    ray.get(jobs.finish.remote(spec.job_id, 2, runner.progress, str(failure.value)))
    record: JobRecord = ray.get(jobs.get.remote(spec.job_id))
    assert (record.chunks_done, record.chunk_sent_at_ms) == (1, failed.chunk_sent_at_ms)


def test_a_job_id_is_refused_for_another_file_after_its_first_job_failed(
    cluster: Cluster, tmp_path: Path
) -> None:
    client, data_dir, namespace = cluster
    first, second = tmp_path / "a.parquet", tmp_path / "b.parquet"
    table = stock_file(first, 3 * CHUNK_ROWS, skus=600, locations=2)
    write(table.set_column(2, "quantity", pc.add(table.column("quantity"), 1)), second)
    spec = job_spec(first, "delta", "parquet", first.name, "reused-2")
    fail_after_the_first_chunk(client, spec, first, data_dir, namespace)
    skus = sorted(set(table.column("sku").to_pylist()))
    after_first = on_hand(client, skus)
    jobs = jobs_actor(data_dir, namespace)
    other = job_spec(second, "delta", "parquet", second.name, "reused-2")
    refused: Begun = ray.get(jobs.begin.remote(other))
    assert refused.reused and refused.attempt is None
    assert (refused.record.status, refused.record.source) == ("failed", "a.parquet")
    assert on_hand(client, skus) == after_first
    # Its own file resumes it.
    assert ray.get(jobs.begin.remote(spec)).attempt == 2
