"""Resident bytes per SKU-location of a shard's ledger, each layout in a fresh subprocess, and
(unless --no-actor) of a real shard actor that recovered it; see docs/performance.md.

    python -m bench.memory [--quick] [--layouts 100000x10 1000000x1] [--no-actor]
"""

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    adjustment,
    location_name,
    print_json,
    print_table,
    sku_name,
    source_state,
    start_ray,
)
from inventory_actors.domain import Ledger
from inventory_actors.domain.snapshot_io import SKU_COLUMNS
from inventory_actors.shard.codec import decode_rows, encode_rows
from inventory_actors.shard.recovery import chunk_loaders

GOAL_BYTES = 500
CHUNK_SKUS = 5_000  # row chunks: SKUs per chunk
CHUNK_LEVELS = 5_000  # columnar chunks: SKU-locations per chunk
START_MS = 1_800_000_000_000


def snapshot_payloads(skus: int, locations: int, rows: bool = False) -> list[tuple[str, str]]:
    """Snapshot (kind, payload) chunks of `skus` SKUs with `locations` stocked locations each,
    columnar as the Snapshotter writes them, or in the older row format."""
    names = [location_name(j) for j in range(locations)]
    chunk_skus = CHUNK_SKUS if rows else max(CHUNK_LEVELS // max(locations, 1), 1)
    payloads = []
    for start in range(0, skus, chunk_skus):
        ids = range(start, min(start + chunk_skus, skus))
        if rows:
            chunk = [[sku_name(i), locations, [[n, 1_000_000 + i, 0] for n in names]] for i in ids]
            payloads.append(("skus", encode_rows(chunk)))
            continue
        columns = [
            names,
            [sku_name(i) for i in ids],
            [locations] * len(ids),
            [locations] * len(ids),
            list(range(locations)) * len(ids),
            [1_000_000 + i for i in ids for _ in names],
            [0] * (len(ids) * locations),
        ]
        payloads.append((SKU_COLUMNS, encode_rows(columns)))
    return payloads


def child(layout: str, how: str) -> None:
    """Build one ledger in this (fresh) process and print what it cost, as JSON."""
    skus, locations = (int(part) for part in layout.split("x"))
    recovered = how.startswith("recovered")
    payloads = snapshot_payloads(skus, locations, how == "recovered-rows") if recovered else []
    process = psutil.Process()
    gc.collect()
    before = process.memory_info().rss
    started = time.perf_counter()
    ledger = Ledger()
    if recovered:
        loaders = chunk_loaders(ledger)
        for kind, payload in payloads:
            loaders[kind](decode_rows(payload))
        ledger.rebuild_indexes()
    else:
        names = [location_name(j) for j in range(locations)]
        for i in range(skus):
            sku = sku_name(i)
            for name in names:
                ledger.execute(adjustment(sku, name, 1_000_000 + i), START_MS)
    seconds = time.perf_counter() - started
    del payloads
    gc.collect()
    after = process.memory_info().rss
    levels = ledger.level_count
    assert levels == skus * locations
    print(
        json.dumps(
            {
                "layout": layout,
                "how": how,
                "levels": levels,
                "seconds": seconds,
                "rss_before": before,
                "rss_after": after,
                "bytes_per_level": (after - before) / levels,
            }
        )
    )


def write_snapshot(data_dir: Path, skus: int, locations: int) -> None:
    """A shard file for shard 0 of `data_dir` holding just a snapshot of those SKUs."""
    from inventory_actors.shard.partitioning import shard_path  # noqa: PLC0415
    from persistence import SqliteShardStore  # noqa: PLC0415

    store = SqliteShardStore(shard_path(data_dir, 0))
    snapshot_id = store.begin_snapshot(0, START_MS)
    for kind, payload in snapshot_payloads(skus, locations):
        store.add_snapshot_chunk(snapshot_id, kind, payload)
    store.finish_snapshot(snapshot_id, 2)
    store.close()


def actor_rss(layouts: list[str]) -> list[dict[str, Any]]:
    """RSS of a real shard actor that recovered each layout from a snapshot, less the RSS of
    one that recovered nothing."""
    import ray  # noqa: PLC0415 - only this optional part needs Ray

    from inventory_actors.cluster.client import InventoryClient  # noqa: PLC0415
    from inventory_actors.shard.protocol import ShardStatus  # noqa: PLC0415

    namespace = f"bench-memory-{uuid.uuid4().hex[:8]}"
    start_ray(namespace)
    measured: dict[str, tuple[int, float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
            for layout in ["0x1", *layouts]:
                skus, locations = (int(part) for part in layout.split("x"))
                data_dir = Path(tmp) / layout
                write_snapshot(data_dir, skus, locations)
                client = InventoryClient.connect(
                    data_dir, shard_count=1, namespace=f"{namespace}-{layout}"
                )
                try:
                    status = client.status()[0]
                    assert isinstance(status, ShardStatus)
                    assert status.level_count == skus * locations
                    rss = psutil.Process(status.pid).memory_info().rss
                    measured[layout] = (rss, status.recovery_seconds)
                finally:
                    client.shutdown()
    finally:
        ray.shutdown()
    empty_rss = measured.pop("0x1")[0]
    results = []
    for layout, (rss, recovery_seconds) in measured.items():
        skus, locations = (int(part) for part in layout.split("x"))
        per_level = (rss - empty_rss) / (skus * locations)
        results.append(
            {
                "layout": layout,
                "empty_rss": empty_rss,
                "rss": rss,
                "recovery_seconds": recovery_seconds,
                "bytes_per_level": per_level,
            }
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--layouts", nargs="+", default=["100000x10", "1000000x1"], help="SKUs x locations per SKU"
    )
    parser.add_argument("--how", nargs="+", default=["execute", "recovered", "recovered-rows"])
    parser.add_argument("--no-actor", action="store_true", help="skip the shard actor's RSS")
    parser.add_argument("--child", nargs=2, metavar=("LAYOUT", "HOW"), help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true", help="CI smoke size, under ~20 s")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    if args.quick:
        args.layouts, args.no_actor = ["20000x5", "100000x1"], True

    results = []
    for layout in args.layouts:
        for how in args.how:
            command = [sys.executable, "-m", "bench.memory", "--child", layout, how]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results.append(json.loads(output.strip().splitlines()[-1]))
    print("\nLedger memory: RSS growth per SKU-location (fresh process per row)")
    keys = ["layout", "how", "levels", "seconds", "rss_before", "rss_after", "bytes_per_level"]
    headers = ["layout", "filled by", "sku-locations", "build s", "RSS before", "RSS after"]
    print_table([*headers, "bytes/level"], [[r[key] for key in keys] for r in results])
    actor: list[dict[str, Any]] = []
    if not args.no_actor:
        actor = actor_rss(args.layouts)
        print("\nShard actor (Ray) that recovered the layout from a snapshot, less an empty one:")
        print_table(
            ["layout", "empty RSS", "RSS", "recovery s", "bytes/level"],
            [
                [a["layout"], a["empty_rss"], a["rss"], a["recovery_seconds"], a["bytes_per_level"]]
                for a in actor
            ],
        )
    worst = max(r["bytes_per_level"] for r in results)
    met = worst <= GOAL_BYTES
    print(
        f"\nGoal: <= {GOAL_BYTES} bytes per SKU-location. Worst ledger: {worst:.0f} -> "
        f"{'MET' if met else 'NOT met'}"
    )
    if args.quick:
        print("(--quick sizes: a smoke test, not the size the goal is stated for)")
    if actor:
        print(f"Worst shard actor: {max(a['bytes_per_level'] for a in actor):.0f} bytes/level")
    print_json(
        "memory",
        {
            "source": source_state(),
            "results": results,
            "actor": actor,
            "goal_bytes": GOAL_BYTES,
            "goal_met": met,
        },
    )


if __name__ == "__main__":
    main()
