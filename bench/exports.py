"""Exports of 1,000,000 SKU-locations (100,000 SKUs x 10 locations, 4 shards, restocked):
`inventory export` and `inventory export-ledger`, each timed to its complete file.

    python -m bench.exports [--skus N]
"""

import argparse
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import ray

from bench.common import print_json, print_table, source_state, start_ray
from bench.restock import write_file
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.restock.job import JobRunner, job_spec
from inventory_cli.main import build_parser

NAMESPACE = "bench-exports"
LOCATIONS = 10


def load(client: InventoryClient, path: Path, skus: int) -> None:
    write_file(path, skus * LOCATIONS, 1, skus=skus)
    runner = JobRunner(
        job_spec(path, "set", "parquet", path.name),
        client.partition,
        lambda part: client.shards[part.shard_id].restock.remote(part),
        lambda _: True,
    )
    runner.run(path)


def timed_command(*argv: str) -> float:
    args = build_parser().parse_args(list(argv))
    started = time.perf_counter()
    assert args.handler(args) == 0
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skus", type=int, default=100_000)
    args = parser.parse_args()
    start_ray(NAMESPACE)
    levels = args.skus * LOCATIONS
    with tempfile.TemporaryDirectory(prefix="bench-exports-") as tmp:
        data_dir = Path(tmp) / "data"
        client = InventoryClient.connect(data_dir, shard_count=4, namespace=NAMESPACE)
        load(client, Path(tmp) / "load.parquet", args.skus)
        common = ["--data-dir", str(data_dir), "--namespace", NAMESPACE]
        stock, ledger = Path(tmp) / "stock.parquet", Path(tmp) / "ledger.parquet"
        stock_seconds = timed_command("export", "--out", str(stock), *common)
        ledger_seconds = timed_command("export-ledger", "--out", str(ledger), *common)
        stock_rows = pq.ParquetFile(stock).metadata.num_rows
        ledger_rows = pq.ParquetFile(ledger).metadata.num_rows
        assert stock_rows == levels, stock_rows
        assert ledger_rows == levels, ledger_rows
        client.shutdown()
    ray.shutdown()
    print_table(
        ["export", "rows", "seconds", "rows/s"],
        [
            ["inventory export", stock_rows, stock_seconds, stock_rows / stock_seconds],
            ["inventory export-ledger", ledger_rows, ledger_seconds, ledger_rows / ledger_seconds],
        ],
    )
    print_json(
        "exports",
        {
            "levels": levels,
            "stock_seconds": round(stock_seconds, 3),
            "ledger_seconds": round(ledger_seconds, 3),
            "source": source_state(),
        },
    )


if __name__ == "__main__":
    main()
