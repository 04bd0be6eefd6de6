"""A chaos run: clients over HTTP against a private multi-node cluster while faults are
injected, then the checker; writes a report and the history, exits 1 on any violation.

    python -m chaos.run --seconds 1800 --seed 7     # `make chaos`; see docs/chaos.md
    python -m chaos.run --replicated                # shards as replica sets over 4 hosts
"""

import argparse
import asyncio
import gzip
import json
import random
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from chaos.checker import check
from chaos.cluster import ChaosCluster, environment_for_chaos
from chaos.faults import FAILOVER_KINDS, KINDS, REPLICATED_KINDS, Injector
from chaos.feed_watch import FeedWatch
from chaos.history import History, Outcome
from chaos.probes import Probes, failover_figures
from chaos.report import write_report
from chaos.verdict import FinalState, Verdict, Violation
from chaos.workload import LOCATIONS, Client, Shared, resolve_unknowns, send
from inventory_actors.shard.fault_hooks import Fault
from inventory_actors.shard.partitioning import shard_path

INITIAL_ON_HAND = 300
FEED_PAGE = 10_000
FINAL_READ_ROUNDS_MAX = 3
QUIESCENT_TIMEOUT_SECONDS = 60
QUIESCENT_POLL_SECONDS = 0.5
BROKEN_BUILDS = {
    "skip-idempotency": (Fault.SKIP_IDEMPOTENCY, 1.0),
    "ack-before-commit": (Fault.ACK_BEFORE_COMMIT, 0.2),
    "refuse-retries": (Fault.REFUSE_RETRIES, 1.0),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="how long clients run")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--skus", type=int, default=40)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--shard-hosts", type=int, default=2, help="worker nodes for shards")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument(
        "--fault-gap", type=float, nargs=2, default=(2.0, 6.0), help="seconds between faults"
    )
    parser.add_argument(
        "--faults",
        help="kinds, comma-separated (default: every kind of the mode; docs/chaos.md)",
    )
    parser.add_argument(
        "--replicated",
        action="store_true",
        help="a local etcd and 4 shard hosts, each shard a replica set of 3 on distinct hosts, "
        "with host and primary faults and failover figures",
    )
    parser.add_argument("--restock-rows", type=int, default=20_000)
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=180.0,
        help="seconds the service has after the run to be whole again (every shard up, "
        "every decision applied)",
    )
    parser.add_argument(
        "--break",
        dest="broken",
        choices=sorted(BROKEN_BUILDS),
        help="run a deliberately broken build (the checker must catch it)",
    )
    # Parts of the workload that wait on fixes of the service (docs/chaos.md, Switches).
    parser.add_argument(
        "--late-broken-restock",
        action="store_true",
        help="also run a restock file that breaks after its first chunk: it must be refused whole",
    )
    parser.add_argument(
        "--reused-job-id",
        action="store_true",
        help="after the load, run another file under a used job id: it must be refused",
    )
    parser.add_argument(
        "--feed-retention",
        type=float,
        default=0.0,
        help="seconds of change feed the shards keep (default: 7 days); with it a follower "
        "reads the feed through the run and pages are read from cursors taken earlier",
    )
    parser.add_argument("--out", type=Path, default=Path("artifacts/chaos"))
    args = parser.parse_args(argv)
    if args.faults is None:
        args.faults = ",".join(REPLICATED_KINDS if args.replicated else KINDS)
    return args


async def stock_levels(session: aiohttp.ClientSession, skus: list[str]) -> dict[Any, int]:
    initial = {}
    for sku in skus:
        for location in LOCATIONS:
            body = {"on_hand": INITIAL_ON_HAND, "reason": "cycle_count"}
            path = f"/v1/skus/{sku}/locations/{location}"
            for _ in range(20):
                status, _, _ = await send(session, "PUT", path, body, f"init-{sku}-{location}")
                if status == 200:
                    break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError(f"could not stock {sku}@{location}")
            initial[sku, location] = INITIAL_ON_HAND
    return initial


async def run(args: argparse.Namespace) -> tuple[History, Verdict, dict[str, Any]]:
    environment_for_chaos()
    started = time.monotonic()
    # On this thread: Ray's nodes install signal handlers, which only the main thread may.
    if args.replicated:
        progress(f"starting etcd, a head and 4 shard hosts, replicated (seed {args.seed})")
    else:
        progress(f"starting a cluster of {args.shard_hosts + 1} nodes (seed {args.seed})")
    cluster = ChaosCluster.start(
        args.shards, args.shard_hosts, args.replicas, args.feed_retention, args.replicated
    )
    figures: dict[str, Any] = {"setup_seconds": round(time.monotonic() - started, 1)}
    try:
        history, verdict, figures = await _run(args, cluster, figures)
        if not verdict.ok:
            # A failed run keeps the shards' logs: what each replica did, and when.
            cluster.keep_logs(args.out)
        return history, verdict, figures
    finally:
        cluster.shutdown()


async def _run(
    args: argparse.Namespace, cluster: ChaosCluster, figures: dict[str, Any]
) -> tuple[History, Verdict, dict[str, Any]]:
    history = History()
    skus = [f"CH-{args.seed}-{n}" for n in range(args.skus)]
    headers = {"Authorization": f"Bearer {cluster.key}"}
    connector = aiohttp.TCPConnector(limit=args.clients * 2)
    async with aiohttp.ClientSession(cluster.url, headers=headers, connector=connector) as session:
        initial = await stock_levels(session, skus)
        progress(f"{args.clients} clients for {args.seconds:g} s, faults {args.faults}")
        if args.broken:
            fault, value = BROKEN_BUILDS[args.broken]
            for shard in cluster.client.shards:
                await shard.inject_fault.remote(fault.value, value)
        shared = Shared(skus, history)
        injector = Injector(
            cluster,
            history,
            args.seed,
            shared.now,
            tuple(kind for kind in args.faults.split(",") if kind),
            args.restock_rows,
            skus,
            args.late_broken_restock,
            args.reused_job_id,
        )
        stop = asyncio.Event()
        clients = [Client(n, args.seed, shared).run(session, stop) for n in range(args.clients)]
        watch = None
        if args.feed_retention:
            watch = FeedWatch(shared.now, random.Random(args.seed), args.feed_retention)
            clients += [watch.follow(session, stop), watch.read_old(session, stop)]
        probes = None
        if args.replicated:
            probes = Probes(shared, cluster.client.partition, args.seed)
            clients.append(probes.run(session, stop))
        tasks = [asyncio.create_task(c) for c in clients]
        faults = asyncio.create_task(injector.run(stop, tuple(args.fault_gap)))
        # The run's length is the experiment, not a wait for something to happen.
        await asyncio.sleep(args.seconds)
        stop.set()
        await asyncio.gather(*tasks, faults)
        figures["load_seconds"] = round(shared.now(), 1)
        if probes is not None:
            figures["replication"] = replication_figures(injector, probes, shared.now())
        # Besides the run's SKUs: the probes' and those written to frozen primaries (each must
        # hold exactly what was acknowledged: every probe add, no zombie write).
        extra = [] if probes is None else [*probes.skus.values()]
        extra += [sku for sku, _, _ in injector.zombies]
        settle_started = time.monotonic()
        try:
            final = await settle_and_read(
                args, session, cluster, injector, shared, initial, watch, extra
            )
        except (TimeoutError, RuntimeError) as error:
            # A service that cannot come back has lost availability, and the checker cannot
            # read what it holds: that alone fails the run.
            figures["feed_events"] = 0
            figures["settle_seconds"] = round(time.monotonic() - settle_started, 1)
            return history, Verdict([Violation("availability", repr(error))], Counter()), figures
        figures["settle_seconds"] = round(time.monotonic() - settle_started, 1)
        if watch is not None:
            figures["feed_pruned_shards"] = await pruned_shards(session, final.feed)
    figures["feed_events"] = len(final.feed)
    figures |= restock_figures(final.restock_jobs)
    progress(f"checking {len(history.ops):,} operations")
    verdict = check(history, final)
    for sku, said, ok in injector.zombies:
        verdict.checked["writes to frozen primaries"] += 1
        if ok:
            verdict.violations.append(
                Violation("zombie", f"a resumed frozen primary acknowledged {sku}: {said}")
            )
    if not verdict.ok:
        write_final_state(final, args.out)
    return history, verdict, figures


def replication_figures(injector: Injector, probes: Probes, load_seconds: float) -> dict[str, Any]:
    """Failover, untouched-shard failures and back-to-full times per replication fault kind, and
    what resumed frozen primaries answered."""
    probes.client_writes(injector.history.ops)
    kinds = [kind for kind in FAILOVER_KINDS if kind in injector.kinds]
    figures = failover_figures(injector.history.faults, probes, kinds, load_seconds)
    return {
        "by_kind": figures,
        "untouched_failed_writes": sum(f["untouched_failed_writes"] for f in figures.values()),
        "back_to_full_seconds_max": max(
            (f["back_to_full_seconds_max"] or 0.0 for f in figures.values()), default=0.0
        ),
        "probe_writes": sum(len(t) for t in probes.attempts.values()),
        "zombie_writes": len(injector.zombies),
        "zombie_acknowledged": sum(1 for _, _, ok in injector.zombies if ok),
    }


def restock_figures(found: list[dict[str, Any]]) -> dict[str, Any]:
    jobs = [job for job in found if job.get("expect") != "refused"]
    return {
        "restock_jobs": len(jobs),
        # Runs of a file after the load, because a re-run's driver died as well (faults.py).
        "restock_runs_after_load": sum(job["extra_runs"] for job in jobs),
        "restock_rerun_exit_codes": dict(Counter(str(job["rerun_exit_code"]) for job in jobs)),
        # Files the run expected refused, and how their runs exited.
        "restock_refusals": {
            job["what"]: job["exit_code"] for job in found if job.get("expect") == "refused"
        },
    }


def write_final_state(final: FinalState, out: Path) -> None:
    """What the checker read (SKUs, reservations, the whole feed), kept for a failed run so that
    its violations can be traced event by event."""
    out.mkdir(parents=True, exist_ok=True)
    state = {"skus": final.skus, "holds": final.holds, "feed": final.feed}
    with gzip.open(out / "final-state.json.gz", "wt") as file:
        json.dump(state, file)


async def settle_and_read(
    args: argparse.Namespace,
    session: aiohttp.ClientSession,
    cluster: ChaosCluster,
    injector: Injector,
    shared: Shared,
    initial: dict[Any, int],
    watch: FeedWatch | None,
    extra_skus: list[str],
) -> FinalState:
    """Wait until the service is whole again, resolve every unknown outcome, then read (the
    run's SKUs and `extra_skus`)."""
    progress("load stopped; waiting for every shard")
    await asyncio.to_thread(cluster.wait_shards_up, args.settle_timeout)
    history = injector.history
    progress("resolving unknown outcomes")
    await resolve_unknowns(session, history, shared.now)
    progress("finishing restock jobs")
    restock_jobs = await asyncio.to_thread(injector.finish_restocks)
    await asyncio.to_thread(cluster.wait_shards_up, args.settle_timeout, True)
    skus = [*shared.skus, *extra_skus]
    final = await final_state(session, cluster, history, skus, initial, watch)
    final.restock_jobs = restock_jobs
    return final


async def final_state(
    session: aiohttp.ClientSession,
    cluster: ChaosCluster,
    history: History,
    skus: list[str],
    initial: dict[Any, int],
    watch: FeedWatch | None = None,
) -> FinalState:
    """The SKUs, the reservations and the whole feed (the follower's and the rest, if one ran),
    read while every shard's clock stands still: no expiry or lease ends a reservation between
    the reads, so the SKUs' `reserved` and the reservations' statuses describe one moment (read
    with the clocks running, expiries land between the reads, and `reserved` disagrees with
    the statuses by what just expired).
    Decisions already taken still reach the other shards: the read begins once two reads of the
    SKUs agree, and is taken again if they changed while the reservations were read."""
    hold_ids = sorted({h for op in history.ops if (h := op.hold_id)})
    try:
        await freeze_clocks(cluster, True)
        for _ in range(FINAL_READ_ROUNDS_MAX):
            still = await quiescent_skus(session, skus)
            progress(f"clocks frozen; reading {len(hold_ids):,} reservations")
            holds = await read_holds(session, hold_ids)
            views = await read_skus(session, skus)
            if views == still:
                break
        else:
            raise RuntimeError("the stock kept changing while every shard's clock stood still")
        progress("reading the change feed")
        feed = await read_feed(session, watch)
    finally:
        await freeze_clocks(cluster, False)
    progress(f"read {len(feed):,} events; checking the shard files")
    return FinalState(
        skus=views,
        holds=holds,
        feed=feed,
        integrity=integrity(cluster),
        initial=initial,
        home_shards={h: cluster.client.partition.owner(hold=h) for h in hold_ids},
        cursor_reads=[] if watch is None else watch.reads,
        feed_broken=None if watch is None else watch.broken,
    )


async def freeze_clocks(cluster: ChaosCluster, frozen: bool) -> None:
    """Stop every shard's clock, or let them run again (a shard that cannot be told then has
    restarted, and its clock runs anyway)."""
    await asyncio.gather(
        *(
            shard.inject_fault.remote(Fault.CLOCK_FREEZE.value, int(frozen))
            for shard in cluster.client.shards
        ),
        return_exceptions=not frozen,
    )


async def quiescent_skus(
    session: aiohttp.ClientSession, skus: list[str]
) -> dict[str, dict[str, Any] | None]:
    """The SKUs once two reads in a row agree: the decisions taken before the clocks stopped
    have reached every shard."""
    deadline = time.monotonic() + QUIESCENT_TIMEOUT_SECONDS
    last = await read_skus(session, skus)
    while time.monotonic() < deadline:
        await asyncio.sleep(QUIESCENT_POLL_SECONDS)
        views = await read_skus(session, skus)
        if views == last:
            return views
        last = views
    raise RuntimeError(f"the stock still changed after {QUIESCENT_TIMEOUT_SECONDS} s")


def progress(what: str) -> None:
    """A line on stderr per phase, so a long run shows where it is."""
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


async def _get(session: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> Any:
    for _ in range(30):
        status, answer, _ = await send(session, method, path, body, None)
        if status in (200, 404):
            return answer if status == 200 else None
        await asyncio.sleep(0.5)
    raise RuntimeError(f"{method} {path}: no answer")


async def read_holds(
    session: aiohttp.ClientSession, hold_ids: list[str]
) -> dict[str, dict[str, Any] | None]:
    found: dict[str, dict[str, Any] | None] = {}
    gate = asyncio.Semaphore(32)

    async def one(hold_id: str) -> None:
        async with gate:
            found[hold_id] = await _get(session, "GET", f"/v1/reservations/{hold_id}")

    await asyncio.gather(*(one(h) for h in hold_ids))
    return found


async def read_skus(
    session: aiohttp.ClientSession, skus: list[str]
) -> dict[str, dict[str, Any] | None]:
    found: dict[str, dict[str, Any] | None] = dict.fromkeys(skus)
    for start in range(0, len(skus), 1_000):
        answer = await _get(
            session, "POST", "/v1/skus:query", {"skus": skus[start : start + 1_000]}
        )
        for view in answer["items"]:
            found[view["sku"]] = view
    return found


async def read_feed(
    session: aiohttp.ClientSession, watch: FeedWatch | None = None
) -> list[dict[str, Any]]:
    """The whole feed: from its start, or what the follower read and the rest."""
    events: list[dict[str, Any]] = [] if watch is None else list(watch.events)
    cursor = None if watch is None else watch.cursor
    while True:
        query = f"?limit={FEED_PAGE}" + (f"&cursor={cursor}" if cursor else "")
        page = await _get(session, "GET", f"/v1/events{query}")
        events.extend(page["events"])
        cursor = page["cursor"]
        if not page["events"]:
            return events


async def pruned_shards(session: aiohttp.ClientSession, feed: list[dict[str, Any]]) -> int:
    """Shards whose oldest event kept now is later than their first one: retention pruned."""
    first: dict[int, int] = {}
    for event in feed:
        first.setdefault(event["shard"], event["lsn"])
    page = await _get(session, "GET", f"/v1/events?limit={FEED_PAGE}")
    oldest: dict[int, int] = {}
    for event in page["events"]:
        oldest.setdefault(event["shard"], event["lsn"])
    return sum(1 for shard, lsn in first.items() if oldest.get(shard, lsn + 1) > lsn)


def integrity(cluster: ChaosCluster) -> dict[str, str]:
    """`PRAGMA integrity_check` of every shard file (of every replica's, replicated)."""
    if cluster.hosts is None:
        paths = [
            shard_path(cluster.data_dir, shard)
            for shard in range(cluster.client.partition.shard_count)
        ]
    else:
        paths = cluster.replica_files()
    found = {}
    for path in paths:
        name = path.name if cluster.hosts is None else f"{path.parent.name}/{path.name}"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
        found[name] = "; ".join(str(row[0]) for row in rows)
    return found


def summarize(history: History, verdict: Verdict, figures: dict[str, Any]) -> dict[str, Any]:
    by_kind: dict[str, Counter[str]] = {}
    finally_by_kind: dict[str, Counter[str]] = {}
    for op in history.ops:
        by_kind.setdefault(op.kind.value, Counter())[op.outcome.value] += 1
        finally_by_kind.setdefault(op.kind.value, Counter())[op.final_outcome.value] += 1
    unknown = [op for op in history.keyed() if op.outcome is Outcome.UNKNOWN]
    retries = Counter(
        "after_load" if retry.after_load else "at_once"
        for op in history.ops
        for retry in op.retries
    )
    return {
        **figures,
        "operations": len(history.ops),
        "operations_by_kind": {kind: dict(counts) for kind, counts in sorted(by_kind.items())},
        # After every retry: what each operation came to.
        "final_outcomes_by_kind": {
            kind: dict(counts) for kind, counts in sorted(finally_by_kind.items())
        },
        "retries": dict(retries),
        "unknown_outcomes": len(unknown),
        # Resolved by the retries made at once, while the load ran.
        "unknown_resolved_during_load": sum(
            1
            for op in unknown
            if op.final_outcome is not Outcome.UNKNOWN and not op.final.after_load
        ),
        "unknown_resolved_as": dict(Counter(op.final_outcome.value for op in unknown)),
        "faults": len(history.faults),
        "faults_by_kind": dict(Counter(f.kind for f in history.faults)),
        "faults_not_injected": sum(1 for f in history.faults if "not injected" in f.detail),
        "recovery_seconds_max": max(
            (f.recovered_seconds or 0.0 for f in history.faults), default=0.0
        ),
        "checked": dict(verdict.checked),
        "violations": len(verdict.violations),
        "violations_by_check": verdict.by_check(),
        "violation_details": verdict.details(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    history, verdict, figures = asyncio.run(run(args))
    summary = {
        "seed": args.seed,
        "broken_build": args.broken,
        **summarize(history, verdict, figures),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out / "history.jsonl.gz", "wt") as out:
        for line in history.lines():
            out.write(line + "\n")
    write_report(summary, args.out)
    print(json.dumps({k: v for k, v in summary.items() if k != "violation_details"}, indent=1))
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
