"""Recovery time of one shard: a snapshot of many SKU-locations plus a log tail, built without
Ray; `recover_ledger` timed in a fresh process per run (variants in docs/performance.md).

    python -m bench.recovery [--quick] [--layouts 100000x10 1000000x1] [--tail 100000]
"""

import argparse
import asyncio
import gc
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    adjustment,
    location_name,
    now_ms,
    print_json,
    print_table,
    reservation,
    sku_name,
    source_state,
)
from inventory_actors.domain import Command, Ledger
from inventory_actors.shard.codec import REPLAY_DECODERS, decode_rows
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.protocol import Submission
from inventory_actors.shard.recovery import (
    REPLAY_PAGE_RECORDS,
    chunk_loaders,
    recover_ledger,
)
from persistence import SqliteShardStore

GOAL_SECONDS = 2.0
# No automatic snapshot while building: the benchmark takes exactly one, when it chooses.
BUILD_CONFIG = ShardConfig(snapshot_every_records=1 << 62, snapshot_every_seconds=1e12)
# (label, invariant check, cold page cache, cyclic GC during recovery)
RUNS = (
    ("warm, check", True, False, True),
    ("warm, no check", False, False, True),
    ("cold, check", True, True, True),
    ("warm, check, gc off", True, False, False),
)


async def pump(core: ShardCore, commands: list[Command], batch: int, in_flight: int) -> None:
    """Submit `commands` `batch` at a time, `in_flight` calls at once; fail on any error."""
    gate = asyncio.Semaphore(in_flight)

    async def call(start: int) -> None:
        async with gate:
            subs = [Submission(c) for c in commands[start : start + batch]]
            bad = [o.value for o in await core.submit(subs) if not o.ok]
            if bad:
                raise RuntimeError(f"{len(bad)} commands failed, first: {bad[0]!r}")

    await asyncio.gather(*(call(start) for start in range(0, len(commands), batch)))


async def build(path: Path, skus: int, locations: int, holds: int, tail: int) -> dict[str, Any]:
    rng = random.Random(7)
    core = ShardCore(0, lambda: SqliteShardStore(path), now_ms, BUILD_CONFIG)
    core.start()
    try:
        started = time.perf_counter()
        names = [location_name(j) for j in range(locations)]
        stocking: list[Command] = [
            adjustment(sku_name(i), name, 1_000_000) for i in range(skus) for name in names
        ]
        await pump(core, stocking, 5_000, 4)
        del stocking
        held: list[Command] = [reservation(sku_name(rng.randrange(skus))) for _ in range(holds)]
        await pump(core, held, 1_000, 4)
        build_seconds = time.perf_counter() - started

        started = time.perf_counter()
        if not await core.snapshots.start(now_ms()):
            raise RuntimeError("the snapshot failed")
        snapshot_seconds = time.perf_counter() - started
        start_lsn = core.snapshots.last_start_lsn

        after: list[Command] = []
        for n in range(tail):
            sku = sku_name(rng.randrange(skus))
            if n % 2:
                after.append(adjustment(sku, names[rng.randrange(locations)], 3))
            else:
                after.append(reservation(sku))
        await pump(core, after, 1_000, 4)
        last_lsn, digest = core.last_lsn, digest_of(core.ledger)
        levels, hold_count = core.ledger.level_count, len(core.ledger.holds)
    finally:
        await core.stop()  # closes the store: SQLite checkpoints the WAL into the file
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT count(*), sum(length(payload)) FROM snapshot_chunks").fetchone()
    conn.close()
    return {
        "levels": levels,
        "holds": hold_count,
        "last_lsn": last_lsn,
        "tail_records": last_lsn - start_lsn,
        "build_seconds": build_seconds,
        "snapshot_seconds": snapshot_seconds,
        "snapshot_chunks": row[0],
        "snapshot_bytes": row[1],
        "file_bytes": os.path.getsize(path),
        "digest": digest,
    }


def digest_of(ledger: Ledger) -> str:
    return hashlib.sha256(repr(ledger.fingerprint()).encode()).hexdigest()[:16]


def drop_cache(path: Path) -> None:
    """Ask the kernel to forget the file's cached pages (clean pages only)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def child_recover(path: Path, check: bool, cold: bool, collect: bool, verify: bool) -> None:
    """In a fresh process: time recover_ledger on a freshly opened store; print JSON."""
    if cold:
        drop_cache(path)
    gc.collect()
    if not collect:
        gc.disable()
    started = time.perf_counter()
    store = SqliteShardStore(path)
    ledger, last_lsn, replayed = recover_ledger(store, check_invariants=check)
    seconds = time.perf_counter() - started
    gc.enable()
    store.close()
    answer: dict[str, object] = {"seconds": seconds, "last_lsn": last_lsn, "replayed": replayed}
    if verify:
        answer["digest"] = digest_of(ledger)
    print(json.dumps(answer))


def child_phases(path: Path) -> None:
    """In a fresh process: the steps of recover_ledger, timed one by one, with the cyclic GC
    off as recover_ledger has it; print JSON."""
    gc.disable()
    times: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        times[name], t = now - t, now

    store = SqliteShardStore(path)
    ledger = Ledger()
    ledger.replaying = True
    snapshot = store.latest_snapshot()
    assert snapshot is not None
    lap("open store, find snapshot")
    chunks = list(store.read_snapshot_chunks(snapshot.snapshot_id))
    lap("read snapshot chunks (sqlite)")
    decoded = [(kind, decode_rows(payload)) for kind, payload in chunks]
    lap("decode snapshot (json)")
    loaders = chunk_loaders(ledger)
    for kind, rows in decoded:
        loaders[kind](rows)
    lap("load snapshot rows")
    del chunks, decoded
    pages, after_lsn = [], snapshot.start_lsn
    while page := store.read_log_events(after_lsn, REPLAY_PAGE_RECORDS):
        pages.append(page)
        after_lsn = page[-1][0]
    lap("read log tail (sqlite)")
    # As replay_page does it: one JSON parse per page, then recovery's own event builders.
    events = []
    for page in pages:
        rows = decode_rows("[" + ",".join([text for _, _, text in page]) + "]")
        for (_, at_ms, _), raw in zip(page, rows, strict=True):
            events.append(([REPLAY_DECODERS[row[0]](row) for row in raw], at_ms))
    lap("decode log tail (json)")
    for batch, at_ms in events:
        for event in batch:
            ledger.apply(event, at_ms)
    lap("apply events")
    ledger.replaying = False
    ledger.rebuild_indexes()
    lap("rebuild indexes")
    ledger.check_invariants()
    lap("check invariants")
    store.close()
    print(json.dumps(times))


def in_child(*args: str) -> Any:
    command = [sys.executable, "-m", "bench.recovery", "--child", *args]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(layout: str, holds: int, tail: int, repeat: int) -> dict[str, Any]:
    skus, locations = (int(part) for part in layout.split("x"))
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        path = Path(tmp) / "shard.sqlite3"
        built = asyncio.run(build(path, skus, locations, holds, tail))
        runs: dict[str, float] = {}
        for label, check, cold, collect in RUNS:
            times = []
            for attempt in range(1 if cold else repeat):
                verify = label == "warm, check" and attempt == 0
                flags = [str(int(flag)) for flag in (check, cold, collect, verify)]
                answer = in_child("recover", str(path), *flags)
                if (answer["last_lsn"], answer["replayed"]) != (
                    built["last_lsn"],
                    built["tail_records"],
                ):
                    raise AssertionError(f"recovered {answer}, built {built}")
                if verify and answer["digest"] != built["digest"]:
                    raise AssertionError("the recovered state differs from the live state")
                times.append(answer["seconds"])
            runs[label] = min(times)
        phases = in_child("phases", str(path))
    return {"layout": layout, **built, "recovery": runs, "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--layouts", nargs="+", default=["100000x10", "1000000x1"], help="SKUs x locations per SKU"
    )
    parser.add_argument("--tail", type=int, default=100_000, help="log records after snapshot")
    parser.add_argument("--holds", type=int, default=10_000, help="holds placed before it")
    parser.add_argument("--repeat", type=int, default=2, help="warm runs; the best counts")
    parser.add_argument("--quick", action="store_true", help="CI smoke size, under ~20 s")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "phases":
            child_phases(Path(args.child[1]))
        else:
            flags = [bool(int(flag)) for flag in args.child[2:6]]
            child_recover(Path(args.child[1]), *flags)
        return
    if args.quick:
        args.layouts, args.tail, args.holds, args.repeat = ["20000x5"], 10_000, 1_000, 1

    results = [measure(layout, args.holds, args.tail, args.repeat) for layout in args.layouts]
    print("\nShard recovery: snapshot + log tail, recover_ledger in a fresh process")
    headers = ["layout", "sku-locations", "holds", "tail records", "snapshot s", "snapshot MB"]
    headers += ["file MB", *(f"{label} s" for label, *_ in RUNS)]
    rows: list[list[object]] = []
    for r in results:
        sizes = [r["snapshot_bytes"] / 1e6, r["file_bytes"] / 1e6]
        rows.append([r["layout"], r["levels"], r["holds"], r["tail_records"]])
        rows[-1] += [r["snapshot_seconds"], *sizes, *r["recovery"].values()]
    print_table(headers, rows)
    for r in results:
        print(f"\nSteps of recovery, {r['layout']} (all chunks decoded before loading, GC off;")
        print(f"building the state through ShardCore took {r['build_seconds']:.1f} s):")
        print_table(["step", "seconds"], list(r["phases"].items()))
    # As a shard runs it: invariant check on (the default), cyclic GC on.
    worst = max(max(r["recovery"]["warm, check"], r["recovery"]["cold, check"]) for r in results)
    met = worst <= GOAL_SECONDS
    print(
        f"\nGoal: recovery <= {GOAL_SECONDS} s (invariant check on, warm or cold cache). "
        f"Worst: {worst:.2f} s -> {'MET' if met else 'NOT met'}"
    )
    if args.quick:
        print("(--quick sizes: a smoke test, not the size the goal is stated for)")
    figures = {"source": source_state(), "results": results}
    print_json("recovery", figures | {"goal_seconds": GOAL_SECONDS, "goal_met": met})


if __name__ == "__main__":
    main()
