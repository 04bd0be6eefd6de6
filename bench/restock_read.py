"""Reading, validating and splitting a restock file by shard: rows per second and peak RSS,
each run in a fresh process, so the peak is the restock's own and not the file writer's.

    python -m bench.restock_read [--rows N] [--skus N] [--locations N] [--format parquet csv]
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from bench.common import location_name, print_json, print_table, sku_name, source_state
from inventory_actors.restock.file_reader import (
    FileFormat,
    RestockMode,
    read_chunks,
    validate_chunk,
)
from inventory_actors.restock.partition import split_by_shard
from inventory_actors.shard.partitioning import PartitionMap

ROWS_PER_CHUNK = 100_000
SHARDS = 4
GOAL_SECONDS_PER_MILLION_ROWS = 1.0


def write_file(path: Path, fmt: FileFormat, rows: int, skus: int, locations: int) -> None:
    """`rows` rows going round every SKU at every location (SKU-major), quantities 1 to 1000."""
    sku_names = pa.array([sku_name(i) for i in range(skus)], pa.string())
    location_names = pa.array([location_name(j) for j in range(locations)], pa.string())
    index = pc.remainder(pa.array(range(rows), pa.int64()), skus * locations)
    table = pa.table(
        {
            "sku": pc.take(sku_names, pc.divide(index, locations)),
            "location": pc.take(location_names, pc.remainder(index, locations)),
            "quantity": pc.add(pc.remainder(pc.multiply(index, 7919), 1000), 1),
        }
    )
    if fmt is FileFormat.PARQUET:
        pq.write_table(table, path, compression="snappy")
    else:
        pa_csv.write_csv(table, path)


def restock_pass(path: Path, fmt: FileFormat, chunks_max: int | None = None) -> dict[str, int]:
    """read -> validate -> split, as a restock job does, up to `chunks_max` chunks."""
    partition = PartitionMap.initial(SHARDS)
    counts = {"rows": 0, "rejected": 0, "chunks": 0, "arrow_bytes_max": 0}
    for chunk in read_chunks(path, fmt, ROWS_PER_CHUNK):
        good, rejects = validate_chunk(chunk, RestockMode.DELTA)
        by_shard = split_by_shard(good, partition)
        assert sum(t.num_rows for t in by_shard.values()) == good.num_rows
        counts["rows"] += chunk.num_rows
        counts["rejected"] += rejects.num_rows
        counts["chunks"] += 1
        # Arrow memory alive while a chunk and its split are held: what the restock holds.
        counts["arrow_bytes_max"] = max(counts["arrow_bytes_max"], pa.total_allocated_bytes())
        if counts["chunks"] == chunks_max:
            break
    return counts


def measure(path: Path, fmt: FileFormat) -> dict[str, Any]:
    """One timed pass over the file (in its own process), after one chunk of warm-up: the
    first use of a kernel loads its code, which is neither data nor a per-file cost."""
    restock_pass(path, fmt, chunks_max=1)
    rss_warm_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    counts = restock_pass(path, fmt)
    seconds = time.perf_counter() - started
    rss_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "format": str(fmt),
        **counts,
        "seconds": seconds,
        "rows_per_second": counts["rows"] / seconds,
        "rss_warm_mib": rss_warm_kib / 1024,
        "rss_peak_mib": rss_peak_kib / 1024,
        "arrow_mib_max": counts["arrow_bytes_max"] / (1 << 20),
    }


def run_self(*args: str) -> str:
    """This benchmark in a fresh process: its peak RSS is then only what it did itself (Linux
    carries a process's peak over fork and exec, so the parent must stay small)."""
    command = [sys.executable, "-m", "bench.restock_read", *args]
    # stderr passes through, so a failure shows its traceback.
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--locations", type=int, default=10)
    parser.add_argument("--format", nargs="+", default=["parquet"], choices=list(FileFormat))
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    fmt = FileFormat(args.format[0])
    if args.write is not None:
        write_file(args.write, fmt, args.rows, args.skus, args.locations)
        return
    if args.measure is not None:
        print(json.dumps(measure(args.measure, fmt)))
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="restock-bench-") as directory:
        for fmt in map(FileFormat, args.format):
            path = Path(directory) / f"restock.{fmt}"
            shape = ["--rows", str(args.rows), "--skus", str(args.skus)]
            shape += ["--locations", str(args.locations), "--format", fmt]
            run_self(*shape, "--write", str(path))
            measured = json.loads(run_self("--format", fmt, "--measure", str(path)))
            results.append({**measured, "file_mib": path.stat().st_size / (1 << 20)})
    headers = ["format", "rows", "file MiB", "seconds", "rows/s", "RSS warm MiB", "RSS peak MiB"]
    headers.append("Arrow max MiB")
    keys = ["format", "rows", "file_mib", "seconds", "rows_per_second", "rss_warm_mib"]
    keys += ["rss_peak_mib", "arrow_mib_max"]
    rows = [[r[k] for k in keys] for r in results]
    print_table(headers, rows)
    seconds_per_million = max(r["seconds"] * 1_000_000 / r["rows"] for r in results)
    print_json(
        "restock_read",
        {
            "source": source_state(),
            "rows_per_chunk": ROWS_PER_CHUNK,
            "shards": SHARDS,
            "results": results,
            "goal_seconds_per_million_rows": GOAL_SECONDS_PER_MILLION_ROWS,
            "meets_goal": seconds_per_million <= GOAL_SECONDS_PER_MILLION_ROWS,
        },
    )


if __name__ == "__main__":
    main()
