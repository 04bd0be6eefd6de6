"""A 1,000,000-row Parquet restock over 10,000 SKUs x 10 locations, end to end on a private Ray
instance as `inventory restock` runs it: rows/s, the job's time, the reader's peak memory.

    python -m bench.restock [--rows N] [--shards N]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from bench.common import print_json, print_table, source_state, start_ray
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import AdjustStock, Ledger, RestockRows
from inventory_actors.restock.job import JobRunner, job_spec
from inventory_actors.restock.runtime import jobs_actor, restock_task
from inventory_actors.shard.codec import encode_events
from inventory_actors.shard.recovery import replay_page

SKUS = 10_000
LOCATIONS = 10
NAMESPACE = "bench-restock"


def write_file(path: Path, rows: int, quantity_offset: int, skus: int = SKUS) -> pa.Table:
    """`rows` rows cycling over `skus` SKUs, then over LOCATIONS locations."""
    index = pa.array(range(rows), pa.int64())

    def ids(prefix: str, numbers: pa.Array) -> pa.Array:
        return pc.binary_join_element_wise(prefix, pc.cast(numbers, pa.string()), "")

    table = pa.table(
        {
            "sku": ids("sku-", pc.remainder(index, skus)),
            "location": ids("L", pc.remainder(pc.divide(index, skus), LOCATIONS)),
            "quantity": pc.add(pc.remainder(index, 9), quantity_offset),
        }
    )
    pq.write_table(table, path)
    return table


def run_as_task(path: Path, mode: str, data_dir: Path) -> tuple[float, float]:
    """(seconds from the file to the job's end, of which hashing the file) for a job run as
    the CLI runs it: a Ray task recording its progress in the jobs actor."""
    started = time.perf_counter()
    spec = job_spec(path, mode, "parquet", path.name)
    hashed = time.perf_counter() - started
    jobs = jobs_actor(data_dir, NAMESPACE)
    begun = ray.get(jobs.begin.remote(spec))
    assert begun.attempt is not None, begun
    record = ray.get(
        restock_task.remote(spec, begun.attempt, str(path), str(data_dir), NAMESPACE, None)
    )
    seconds = time.perf_counter() - started
    assert record is not None and record.status == "succeeded", record
    assert record.rows_applied == record.rows_read, record
    return seconds, hashed


def run_in_child(path: Path, data_dir: Path) -> dict[str, float]:
    """The same job in a process of its own, which reads and splits the file as the job's
    task does: its wall time and its peak memory (the job's, not the shards')."""
    address = ray.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "bench.restock", "--child", address, str(path), str(data_dir)]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    figures: dict[str, float] = json.loads(output.stdout.strip().splitlines()[-1])
    return figures


def child(address: str, path: Path, data_dir: Path) -> None:
    ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    client = InventoryClient.connect(data_dir, namespace=NAMESPACE)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    spec = job_spec(path, "delta", "parquet", path.name, job_id="bench-memory")
    runner = JobRunner(
        spec,
        client.partition,
        lambda part: client.shards[part.shard_id].restock.remote(part),
        lambda _: True,
    )
    started = time.perf_counter()
    progress = runner.run(path)
    seconds = time.perf_counter() - started
    assert progress.rows_applied == progress.rows_read, progress
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "before_bytes": rss_before}))


def run_cli(path: Path, data_dir: Path) -> float:
    """Wall time of `inventory restock FILE` from start to exit, as a user sees it."""
    address = ray.get_runtime_context().gcs_address
    command = [
        sys.executable, "-m", "inventory_cli.main", "restock", str(path),
        "--data-dir", str(data_dir), "--namespace", NAMESPACE, "--address", address,
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True, timeout=600)
    return time.perf_counter() - started


def replay_costs() -> tuple[float, float]:
    """Microseconds to replay one restock row, and one ordinary record (an adjustment): the
    ratio is how snapshots weigh restock records."""
    ledger = Ledger()
    rows = 50_000
    command = RestockRows(
        "replay", 0, "delta", tuple(range(rows)),
        tuple(f"sku-{i % 5_000}" for i in range(rows)),
        tuple(f"L{i % 10}" for i in range(rows)), (1,) * rows, ("restock",) * rows,
    )  # fmt: skip
    _, events = ledger.execute(command, 0)
    restock = [(1, 0, encode_events(events))]
    adjustments = [
        (
            i + 1,
            0,
            encode_events(ledger.execute(AdjustStock(f"sku-{i}", "L0", 1, "received"), 0)[1]),
        )
        for i in range(rows // 5)
    ]
    costs = []
    for records, count in ((restock, rows), (adjustments, rows // 5)):
        replayed = Ledger()
        replayed.replaying = True
        started = time.perf_counter()
        replay_page(replayed, records)
        costs.append((time.perf_counter() - started) / count * 1e6)
    return costs[0], costs[1]


def measure(rows: int, shards: int) -> dict[str, float]:
    """Run every job of the benchmark on one data directory; check the stock they leave."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-restock-") as tmp:
        data_dir = Path(tmp) / "data"
        client = InventoryClient.connect(data_dir, shard_count=shards, namespace=NAMESPACE)
        files = {name: Path(tmp) / f"{name}.parquet" for name in ("warm", "delta", "set", "cli")}
        write_file(files["warm"], 10, 1)
        delta = write_file(files["delta"], rows, 1)
        counts = write_file(files["set"], rows, 0)
        cli = write_file(files["cli"], rows, 2)
        figures["cold_job_seconds"], _ = run_as_task(files["warm"], "delta", data_dir)
        figures["delta_seconds"], figures["hash_seconds"] = run_as_task(
            files["delta"], "delta", data_dir
        )
        figures["set_seconds"], _ = run_as_task(files["set"], "set", data_dir)
        figures["cli_seconds"] = run_cli(files["cli"], data_dir)
        in_child = run_in_child(files["delta"], data_dir)
        figures["job_process_seconds"] = in_child["seconds"]
        figures["job_peak_rss_mib"] = in_child["peak_bytes"] / 2**20
        figures["job_rss_before_mib"] = in_child["before_bytes"] / 2**20
        # The count (after the first delta) leaves each level's last quantity in its file;
        # the CLI's job and the child's then add theirs.
        last = counts.group_by(["sku", "location"], use_threads=False).aggregate(
            [("quantity", "last")]
        )
        expected = sum(
            pc.sum(column).as_py()
            for column in (last["quantity_last"], delta["quantity"], cli["quantity"])
        )
        views = client.get_skus([f"sku-{i}" for i in range(SKUS)])
        total = sum(level.on_hand for view in views if view for level in view.locations)
        assert total == expected, (total, expected)
        client.shutdown()
    return figures


def report(rows: int, figures: dict[str, float]) -> None:
    print_table(
        ["job", "seconds", "rows/s"],
        [
            [name, figures[key], rows / figures[key]]
            for name, key in (
                ("delta, Ray task", "delta_seconds"),
                ("set, Ray task", "set_seconds"),
                ("delta, a process of its own", "job_process_seconds"),
                ("`inventory restock` wall time", "cli_seconds"),
            )
        ],
    )
    print(
        "first job of a cluster (10 rows: starts the jobs actor and a worker): "
        f"{figures['cold_job_seconds']:.2f} s"
    )
    print(
        f"peak RSS of the job's process: {figures['job_peak_rss_mib']:,.0f} MiB "
        f"({figures['job_rss_before_mib']:,.0f} MiB before the job)"
    )
    print(
        f"replay: {figures['replay_us_per_restock_row']:.2f} us per restock row, "
        f"{figures['replay_us_per_record']:.2f} us per record"
    )
    rates = {
        "delta_rows_per_second": round(rows / figures["delta_seconds"]),
        "set_rows_per_second": round(rows / figures["set_seconds"]),
    }
    rounded = {key: round(value, 3) for key, value in figures.items()}
    print_json("restock", {"rows": rows, **rounded, **rates, "source": source_state()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]), Path(args.child[2]))
        return
    row_us, record_us = replay_costs()
    start_ray(NAMESPACE)
    figures = measure(args.rows, args.shards)
    figures.update(replay_us_per_restock_row=row_us, replay_us_per_record=record_us)
    figures["shards"] = args.shards
    report(args.rows, figures)


if __name__ == "__main__":
    main()
