"""Durable ReserveStock commands per second through the real shard actors on local Ray, one or
1,000 per call, and the same batches into a ShardCore without Ray (docs/performance.md).

    python -m bench.shard_throughput [--quick] [--profile a|b] [--shards 1 2]
"""

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from bench import profiling
from bench.common import (
    adjustment,
    now_ms,
    print_json,
    print_table,
    reservation,
    sku_name,
    source_state,
    start_ray,
)
from inventory_actors.cluster.client import InventoryClient, Pending
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.protocol import Outcome, ShardStatus, Submission
from persistence import SqliteShardStore

GOAL_PER_SECOND = 150_000
ON_HAND = 1_000_000_000
Calls = list[list[Submission]]


class Failures:
    """Counts failed outcomes by kind and keeps the first few to print."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.examples: list[str] = []

    def check(self, outcomes: Sequence[Outcome]) -> None:
        for outcome in outcomes:
            if not outcome.ok:
                self.kinds[type(outcome.value).__name__] += 1
                if len(self.examples) < 5:
                    self.examples.append(repr(outcome.value))

    @property
    def count(self) -> int:
        return sum(self.kinds.values())


def reservations(client: InventoryClient | None, skus: int, count: int, seed: int) -> Calls:
    """`count` one-line holds of 1 unit spread over the SKUs, one list per shard."""
    shards = 1 if client is None else client.partition.shard_count
    per_shard: Calls = [[] for _ in range(shards)]
    for i in range(count):
        command = reservation(sku_name((seed + i) * 7919 % skus))
        shard = 0 if client is None else client.shard_of(command)
        per_shard[shard].append(Submission(command))
    return per_shard


def calls_of(per_shard: Calls, size: int) -> Calls:
    """Calls of `size` submissions, each for one shard, taking the shards in turn."""
    chunked = [[subs[i : i + size] for i in range(0, len(subs), size)] for subs in per_shard]
    return [c[k] for k in range(max(map(len, chunked))) for c in chunked if k < len(c)]


def shard_counters(client: InventoryClient) -> dict[str, int]:
    """Group commits, commands and snapshots so far, summed over the shards that answered."""
    answers = [s for s in client.status() if isinstance(s, ShardStatus)]
    return {
        "batches": sum(s.batches for s in answers),
        "commands": sum(s.commands for s in answers),
        "snapshots": sum(s.snapshots_completed for s in answers),
    }


def stock(client: InventoryClient, skus: int) -> None:
    """One location per SKU, with far more units than the runs reserve, in batches."""
    commands = [Submission(adjustment(sku_name(i), "L01", ON_HAND)) for i in range(skus)]
    failures = Failures()
    for start in range(0, skus, 5_000):
        failures.check(client.execute(commands[start : start + 5_000], validate=False))
    if failures.count:
        raise RuntimeError(f"stocking failed: {failures.examples}")


def run(client: InventoryClient, calls: Calls, window: int, failures: Failures) -> dict[str, float]:
    """Send `calls`, at most `window` of them unanswered at any time; wait for all."""
    before = shard_counters(client)
    pending: deque[Pending] = deque()
    started = time.perf_counter()
    for subs in calls:
        pending.append(client.submit(subs, validate=False))
        if len(pending) >= window:
            failures.check(pending.popleft().wait())
    while pending:
        failures.check(pending.popleft().wait())
    seconds = time.perf_counter() - started
    after = shard_counters(client)
    commands = sum(map(len, calls))
    batches = after["batches"] - before["batches"]
    return {
        "commands": commands,
        "seconds": seconds,
        "per_second": commands / seconds,
        "failures": failures.count,
        "group_commits": batches,
        "mean_group_commit": (after["commands"] - before["commands"]) / max(batches, 1),
        "snapshots": after["snapshots"] - before["snapshots"],
    }


def ping_run(client: InventoryClient, count: int, window: int) -> dict[str, float]:
    """Ray's floor for scenario (a): no-op `ping` calls to shard 0, `window` in flight."""
    pending: deque[Any] = deque()
    started = time.perf_counter()
    for _ in range(count):
        pending.append(client.shards[0].ping.remote())
        if len(pending) >= window:
            ray.get(pending.popleft())
    ray.get(list(pending))
    seconds = time.perf_counter() - started
    return {"commands": count, "seconds": seconds, "per_second": count / seconds}


async def core_run(skus: int, calls: Calls, in_flight: int, failures: Failures) -> dict[str, float]:
    """Scenario (c): the same calls into an in-process ShardCore (no Ray, same SQLite file)."""
    with tempfile.TemporaryDirectory(prefix="bench-core-") as tmp:
        path = Path(tmp) / "shard.sqlite3"
        core = ShardCore(0, lambda: SqliteShardStore(path), now_ms, ShardConfig())
        core.start()
        try:
            stocking = [Submission(adjustment(sku_name(i), "L01", ON_HAND)) for i in range(skus)]
            for start in range(0, skus, 5_000):
                failures.check(await core.submit(stocking[start : start + 5_000]))
            batches, snapshots = core.counters.batches, core.snapshots.completed
            gate = asyncio.Semaphore(in_flight)

            async def one(subs: list[Submission]) -> None:
                async with gate:
                    failures.check(await core.submit(subs))

            started = time.perf_counter()
            await asyncio.gather(*(one(subs) for subs in calls))
            seconds = time.perf_counter() - started
            batches = core.counters.batches - batches
            commands = sum(map(len, calls))
            return {
                "commands": commands,
                "seconds": seconds,
                "per_second": commands / seconds,
                "failures": failures.count,
                "group_commits": batches,
                "mean_group_commit": commands / max(batches, 1),
                "snapshots": core.snapshots.completed - snapshots,
            }
        finally:
            await core.stop()


def profile(
    client: InventoryClient, scenario: str, calls: Calls, window: int, seconds: int
) -> dict[str, object]:
    """A scenario on one shard while py-spy samples the shard process and this driver."""
    pid = next(s.pid for s in client.status() if isinstance(s, ShardStatus))
    recordings = {
        "shard actor": profiling.start_recording(pid, seconds),
        "driver": profiling.start_recording(os.getpid(), seconds),
    }
    if None in recordings.values():
        return {"error": "py-spy not found; pip install py-spy"}
    time.sleep(1.0)  # py-spy attaches
    figures = run(client, calls, window, Failures())
    report: dict[str, object] = {"scenario": scenario, "run": figures}
    print(f"\nProfiled run ({scenario}), 1 shard: {figures['per_second']:,.0f}/s under py-spy")
    for side, recording in recordings.items():
        assert recording is not None
        stacks = profiling.finish_recording(recording)
        if isinstance(stacks, str):
            report[side] = {"error": stacks}
            print(f"\npy-spy on the {side} failed: {stacks}")
            continue
        shares = profiling.categorize(stacks)
        print(f"\nProfile of the {side} ({sum(stacks.values())} samples), by category:")
        print_table(["category", "samples", "%"], shares)
        print(f"\nInclusive time of the {side}'s main steps:")
        print_table(["function", "samples", "%"], profiling.inclusive(stacks))
        print(f"\nTop frames (self time) of the {side}:")
        print_table(["frame", "samples", "%"], profiling.top_functions(stacks))
        report[side] = {name: round(share, 1) for name, _, share in shares}
    return report


@dataclass
class Measured:
    """The table's rows, each scenario's figures and failures, and the profile if one was taken."""

    rows: list[list[object]] = field(default_factory=list)
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    failures: dict[str, Failures] = field(default_factory=dict)
    profile: dict[str, object] | None = None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--single", type=int, default=20_000, help="commands in scenario (a)")
    parser.add_argument("--batched", type=int, default=300_000, help="commands in (b) and (c)")
    parser.add_argument("--window", type=int, default=256, help="calls in flight in (a)")
    parser.add_argument("--batch", type=int, default=1_000, help="commands per call in (b)")
    parser.add_argument("--in-flight", type=int, default=3, help="calls in flight per shard (b)")
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-core", action="store_true", help="skip scenario (c)")
    parser.add_argument("--profile", choices=["a", "b"], help="py-spy a scenario on 1 shard")
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="CI smoke size, under ~20 s")
    args = parser.parse_args()
    if args.quick:
        args.skus, args.single, args.batched, args.shards = 2_000, 1_000, 20_000, [1]
        args.profile = None
    return args


def main() -> None:
    args = parse_args()
    measured = Measured()
    namespace = f"bench-throughput-{uuid.uuid4().hex[:8]}"
    start_ray(namespace)
    try:
        for shards in args.shards:
            measure_shards(args, f"{namespace}-{shards}", shards, measured)
    finally:
        ray.shutdown()
    if not args.no_core:
        calls = calls_of(reservations(None, args.skus, args.batched, 10), args.batch)
        failures = measured.failures["c_core"] = Failures()
        results = measured.results["c_core"] = asyncio.run(
            core_run(args.skus, calls, args.in_flight, failures)
        )
        measured.rows.append(["c (no Ray)", 1, args.batch, args.in_flight, *results.values()])
    report(measured)


def measure_shards(
    args: argparse.Namespace, namespace: str, shards: int, measured: Measured
) -> None:
    """Scenarios (a) and (b) on `shards` shards; on one shard also the ping floor and, if asked
    for, the profile."""
    results = measured.results
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as data_dir:
        client = InventoryClient.connect(data_dir, shard_count=shards, namespace=namespace)
        try:
            stock(client, args.skus)
            warm_up = calls_of(reservations(client, args.skus, 2_000, 1), args.batch)
            run(client, warm_up, 2 * shards, Failures())
            cases = (
                ("a", 1, args.window, args.single),
                ("b", args.batch, args.in_flight * shards, args.batched),
            )
            if shards == 1:
                ping = results["ping"] = ping_run(client, args.single, args.window)
                measured.rows.append(
                    ["ping (no-op)", 1, 1, args.window, *ping.values(), *["-"] * 4]
                )
            for scenario, size, window, count in cases:
                calls = calls_of(reservations(client, args.skus, count, 10), size)
                key = f"{scenario}_{shards}_shards"
                measured.failures[key] = Failures()
                results[key] = run(client, calls, window, measured.failures[key])
                measured.rows.append([scenario, shards, size, window, *results[key].values()])
            if args.profile and shards == 1:
                _, size, window, _ = cases[0 if args.profile == "a" else 1]
                rate = results[f"{args.profile}_1_shards"]["per_second"]
                count = int(rate * (args.profile_seconds + 2))
                calls = calls_of(reservations(client, args.skus, count, 3), size)
                measured.profile = profile(
                    client, args.profile, calls, window, args.profile_seconds
                )
        finally:
            client.shutdown()


def report(measured: Measured) -> None:
    print("\nDurable ReserveStock commands (a: 1 per call, b: batched, c: ShardCore without Ray)")
    headers = ["scenario", "shards", "per call", "in flight", "commands", "seconds"]
    headers += ["commands/s", "failures", "group commits", "mean commit", "snapshots"]
    print_table(headers, measured.rows)
    for key, seen in measured.failures.items():
        if seen.count:
            print(f"FAILURES in {key}: {dict(seen.kinds)}; first: {seen.examples}")
    results = measured.results
    best = max((v["per_second"] for k, v in results.items() if k.startswith("b_")), default=0.0)
    met = best >= GOAL_PER_SECOND
    print(f"\nGoal: >= {GOAL_PER_SECOND:,} durable reservations/s with batches of 1,000.")
    print(f"Best batched through Ray: {best:,.0f}/s -> goal {'MET' if met else 'NOT met'}")
    figures: dict[str, object] = {"source": source_state(), "results": results}
    figures |= {"goal_per_second": GOAL_PER_SECOND, "goal_met": met, "cpus": os.cpu_count()}
    figures["failures"] = {k: dict(v.kinds) for k, v in measured.failures.items() if v.count}
    if measured.profile is not None:
        figures["profile"] = measured.profile
    print_json("shard_throughput", figures)


if __name__ == "__main__":
    main()
