"""Durable reservations per second over HTTP, through Ray Serve, measured with wrk: no-op,
spread, hot SKU, batch, spread uncoalesced; rate limits off (docs/http-benchmark.md).

    python -m bench.http_throughput [--quick] [--default-proxy] [--profile]
"""

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import profiling
from bench.common import print_json, print_table, source_state
from bench.stack import NOOP_PREFIX, ServeStack, noop_deployment, serve_stack, stock
from bench.wrk import our_processes, run_wrk, write_scripts, wrk_binary

GOAL_SPREAD_SHARE = 0.80
GOAL_HOT_SHARE = 0.95
GOAL_P99_MS = 50.0
GOAL_BATCH_OPS = 100_000
GOAL_TEXTS = {
    "spread_vs_noop": f">= {GOAL_SPREAD_SHARE:.0%} of no-op",
    "spread_p99_ms": f"spread p99 <= {GOAL_P99_MS:g} ms",
    "hot_vs_spread": f"hot SKU >= {GOAL_HOT_SHARE:.0%} of spread",
    "hot_p99_ms": f"hot SKU p99 <= {GOAL_P99_MS:g} ms",
    "batch_ops_per_second": f">= {GOAL_BATCH_OPS:,} batch ops/s",
}
Runs = dict[str, list[dict[str, Any]]]


class Runner:
    """Generates the Lua scripts and runs wrk against one Serve instance."""

    def __init__(self, url: str, key: str, args: argparse.Namespace, tmp: Path) -> None:
        self.url, self.key, self.args, self.tmp = url, key, args, tmp
        self.scripts = write_scripts(tmp, key, args.skus, args.batch_size)
        self.watched: dict[str, list[int]] = {}

    def run(self, scenario: str, script: str, seconds: float | None = None) -> dict[str, Any]:
        batch = script == "batch"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        duration = seconds or self.args.seconds
        result = run_wrk(
            self.url,
            self.scripts[script],
            threads=self.args.threads,
            connections=self.args.batch_connections if batch else self.args.connections,
            seconds=duration,
            watched=self.watched,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        seconds_run = result["duration_us"] / 1e6
        result["scenario"] = scenario
        result["per_second"] = result["requests"] / seconds_run
        result["wrk_cpu_percent"] = 100.0 * wrk_cpu / seconds_run
        if batch:
            result["ops_per_second"] = result["ops_ok"] / seconds_run
        return result


def summarize(runs: list[dict[str, Any]], key: str = "per_second") -> tuple[float, float, float]:
    values = [r[key] for r in runs]
    return min(values), statistics.median(values), max(values)


def failures_of(run: dict[str, Any], ok: str) -> dict[str, int]:
    """Answers other than `ok`, and socket errors, by kind."""
    bad = {status: n for status, n in run["statuses"].items() if status != ok}
    bad |= {f"socket {k}": n for k, n in run["errors"].items() if k != "status" and n}
    return bad


@dataclass
class Measured:
    """What a run measured: every wrk run by scenario, the coalescer settings compared and the
    replica's profile (if asked for)."""

    runs: Runs = field(default_factory=dict)
    coalescer: dict[str, dict[str, Any]] = field(default_factory=dict)
    profile: dict[str, object] | None = None

    def record(self, result: dict[str, Any]) -> None:
        self.runs.setdefault(result["scenario"], []).append(result)
        extra = ""
        if "ops_per_second" in result:
            extra = f", {result['ops_per_second']:,.0f} ops/s"
        print(
            f"  {result['scenario']:<20} {result['per_second']:>8,.0f} req/s{extra}, "
            f"p50 {result['latency_us']['p50'] / 1e3:.1f} ms, "
            f"p99 {result['latency_us']['p99'] / 1e3:.1f} ms, "
            f"wrk {result['wrk_cpu_percent']:.0f}% CPU, statuses {result['statuses']}",
            flush=True,
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="per wrk run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--uncoalesced-calls", type=int, default=256)
    parser.add_argument("--no-uncoalesced", action="store_true", help="skip coalescing off")
    parser.add_argument("--default-proxy", action="store_true", help="Serve's default proxy")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="spread",
        choices=["spread", "hot", "batch"],
        help="py-spy the replica during one more run of this scenario (default spread)",
    )
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="smoke size, under a minute")
    args = parser.parse_args()
    if args.quick:
        args.skus, args.seconds, args.repeats, args.profile = 2_000, 3.0, 1, None
        args.no_uncoalesced = True  # redeploying costs another half minute
    return args


def main() -> None:
    args = parse_args()
    wrk_binary()
    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    started = time.perf_counter()
    measured = measure(args, tmp, started)
    shutil.rmtree(tmp, ignore_errors=True)
    report(args, measured, time.perf_counter() - started)


def measure(args: argparse.Namespace, tmp: Path, started: float) -> Measured:
    """Every scenario `--repeats` times, interleaved, on one Serve instance; then, unless
    `--no-uncoalesced`, spread again with coalescing off."""
    measured = Measured()
    with serve_stack(args.shards, args.replicas, args.default_proxy) as stack:
        from ray import serve  # noqa: PLC0415

        from serve_app.deployment import APP_NAME  # noqa: PLC0415

        default_calls = stack.calls_in_flight
        serve.run(
            noop_deployment().options(num_replicas=args.replicas).bind(),
            name="noop",
            route_prefix=NOOP_PREFIX,
        )
        stock(stack.url, stack.key, args.skus)
        runner = Runner(stack.url, stack.key, args, tmp)
        runner.watched = {
            "replica": our_processes(f"ServeReplica:{APP_NAME}"),
            "shards": our_processes("ShardActor"),
        }
        print(f"Stocked {args.skus:,} SKUs in {time.perf_counter() - started:.0f} s; runs:")
        runner.run("warm-up", "spread", 2.0)
        runner.run("warm-up", "batch", 2.0)
        for _ in range(args.repeats):
            for scenario in ("noop", "spread", "hot", "batch"):
                measured.record(runner.run(scenario, scenario))
        if args.profile:
            measured.profile = profile_replica(runner, args.profile, args.profile_seconds)
        measured.coalescer["coalesced"] = {"calls_in_flight_per_shard": default_calls}
        if not args.no_uncoalesced:
            measure_uncoalesced(args, stack, runner, measured)
    return measured


def measure_uncoalesced(
    args: argparse.Namespace, stack: ServeStack, runner: Runner, measured: Measured
) -> None:
    """Spread with one actor call per request, each run next to a no-op run."""
    from serve_app.deployment import APP_NAME  # noqa: PLC0415

    stack.redeploy(args.uncoalesced_calls)
    runner.watched["replica"] = our_processes(f"ServeReplica:{APP_NAME}")
    runner.run("warm-up", "spread", 2.0)
    for _ in range(args.repeats):
        measured.record(runner.run("noop", "noop"))
        measured.record(runner.run("spread-uncoalesced", "spread"))
    measured.coalescer["uncoalesced"] = {"calls_in_flight_per_shard": args.uncoalesced_calls}


def profile_replica(runner: Runner, scenario: str, seconds: int) -> dict[str, object]:
    """One more run of `scenario` while py-spy samples the replica process."""
    pids = runner.watched["replica"]
    if not pids:
        return {"error": "replica process not found"}
    recording = profiling.start_recording(pids[0], seconds)
    if recording is None:
        return {"error": "py-spy not found; pip install py-spy"}
    time.sleep(1.0)
    result = runner.run(f"profiled {scenario}", scenario, seconds)
    stacks = profiling.finish_recording(recording)
    if isinstance(stacks, str):
        print(f"\npy-spy on the replica failed: {stacks}")
        return {"error": stacks}
    print(f"\nProfiled {scenario} run: {result['per_second']:,.0f} req/s under py-spy")
    shares = profiling.categorize(stacks, profiling.REPLICA_CATEGORIES)
    print(f"\nProfile of the replica ({sum(stacks.values())} samples), by category:")
    print_table(["category", "samples", "%"], shares)
    print("\nInclusive time of the replica's main steps:")
    print_table(["function", "samples", "%"], profiling.inclusive(stacks, profiling.REPLICA_STEPS))
    print("\nTop frames (self time) of the replica:")
    print_table(["frame", "samples", "%"], profiling.top_functions(stacks, 20))
    return {"scenario": scenario} | {name: round(share, 1) for name, _, share in shares}


def report(args: argparse.Namespace, measured: Measured, seconds: float) -> None:
    runs = measured.runs
    failures = print_runs(args, runs)
    goals = print_goals(runs)
    if "spread-uncoalesced" in runs:
        spread, off = _median(runs, "spread"), _median(runs, "spread-uncoalesced")
        gain = spread / off if off else 0.0
        print(f"  coalescing gain (spread, default vs one call per request): x{gain:.2f}")
        measured.coalescer["gain"] = {"spread_over_uncoalesced": round(gain, 3)}
    figures: dict[str, object] = {"source": source_state(), "seconds": round(seconds, 1)}
    figures["config"] = run_config(args)
    figures["runs"] = {
        scenario: [run_figures(r) for r in results] for scenario, results in runs.items()
    }
    figures["goals"] = {name: {"value": v, "met": met} for name, (v, met) in goals.items()}
    figures["coalescing"] = measured.coalescer
    figures["failures"] = failures
    if measured.profile is not None:
        figures["profile"] = measured.profile
    print_json("http_throughput", figures)


def print_runs(args: argparse.Namespace, runs: Runs) -> dict[str, dict[str, int]]:
    """The table of the scenarios, median (min-max) of their runs; the answers other than
    success, by scenario."""
    rows: list[list[object]] = []
    failures: dict[str, dict[str, int]] = {}
    for scenario, results in runs.items():
        bad = _failures_of_scenario(scenario, results)
        if bad:
            failures[scenario] = bad
        rows.append(_scenario_row(scenario, results, bad))
    proxy = "default proxy" if args.default_proxy else "HAProxy + throughput-optimized"
    print(
        f"\nHTTP through Ray Serve ({proxy}), {args.shards} shards, {args.replicas} replica(s), "
        f"wrk -t{args.threads} -c{args.connections} (batch -c{args.batch_connections}) "
        f"-d{args.seconds:g}s, rate limits disabled; median (min-max) of the runs"
    )
    headers = ["scenario", "runs", "requests/s", "batch ops/s", "p50 ms", "p99 ms (range)"]
    headers += ["wrk CPU", "requests", "failures"]
    print_table(headers, rows)
    for scenario, bad in failures.items():
        print(f"NOT OK answers in {scenario}: {bad}")
    return failures


def _failures_of_scenario(scenario: str, results: list[dict[str, Any]]) -> dict[str, int]:
    ok = "200" if scenario in ("noop", "batch") else "201"
    bad: dict[str, int] = {}
    for result in results:
        for kind, n in failures_of(result, ok).items():
            bad[kind] = bad.get(kind, 0) + n
    return bad


def _scenario_row(
    scenario: str, results: list[dict[str, Any]], bad: dict[str, int]
) -> list[object]:
    low, mid, high = summarize(results)
    p50 = statistics.median(r["latency_us"]["p50"] / 1e3 for r in results)
    p99s = [r["latency_us"]["p99"] / 1e3 for r in results]
    wrk_cpu = statistics.median(r["wrk_cpu_percent"] for r in results)
    ops = "-"
    if scenario == "batch":
        ops_low, ops_mid, ops_high = summarize(results, "ops_per_second")
        ops = f"{ops_mid:,.0f} ({ops_low:,.0f}-{ops_high:,.0f})"
    return [
        scenario,
        len(results),
        f"{mid:,.0f} ({low:,.0f}-{high:,.0f})",
        ops,
        p50,
        f"{statistics.median(p99s):.1f} ({min(p99s):.1f}-{max(p99s):.1f})",
        f"{wrk_cpu:.0f}%",
        sum(r["requests"] for r in results),
        sum(bad.values()),
    ]


def _median(runs: Runs, scenario: str, key: str = "per_second") -> float:
    results = runs.get(scenario, [])
    return statistics.median(r[key] for r in results) if results else 0.0


def _p99(runs: Runs, scenario: str) -> float:
    results = runs.get(scenario, [])
    return statistics.median(r["latency_us"]["p99"] / 1e3 for r in results) if results else 0


def print_goals(runs: Runs) -> dict[str, tuple[float, bool]]:
    """Each goal's value (of the medians) and whether it was met; printed as well."""
    noop, spread, hot = _median(runs, "noop"), _median(runs, "spread"), _median(runs, "hot")
    batch_ops = _median(runs, "batch", "ops_per_second")
    spread_p99, hot_p99 = _p99(runs, "spread"), _p99(runs, "hot")
    goals = {
        "spread_vs_noop": (spread / noop if noop else 0.0, spread >= GOAL_SPREAD_SHARE * noop),
        "spread_p99_ms": (spread_p99, spread_p99 <= GOAL_P99_MS),
        "hot_vs_spread": (hot / spread if spread else 0.0, hot >= GOAL_HOT_SHARE * spread),
        "hot_p99_ms": (hot_p99, hot_p99 <= GOAL_P99_MS),
        "batch_ops_per_second": (batch_ops, batch_ops >= GOAL_BATCH_OPS),
    }
    print("\nGoals (medians):")
    for name, (value, met) in goals.items():
        shown = f"{value:.0%}" if name.endswith("_vs_noop") or "vs" in name else f"{value:,.1f}"
        print(f"  {GOAL_TEXTS[name]:<32} {shown:>10}  {'MET' if met else 'NOT met'}")
    return goals


def run_config(args: argparse.Namespace) -> dict[str, object]:
    return {
        "proxy": "default" if args.default_proxy else "haproxy+throughput_optimized",
        "shards": args.shards,
        "replicas": args.replicas,
        "skus": args.skus,
        "wrk": f"-t{args.threads} -c{args.connections} -d{args.seconds:g}s",
        "batch_connections": args.batch_connections,
        "batch_size": args.batch_size,
        "rate_limits": "disabled",
        "cpus": os.cpu_count(),
    }


def run_figures(result: dict[str, Any]) -> dict[str, object]:
    """One wrk run as the JSON line gives it."""
    return {
        "per_second": round(result["per_second"], 1),
        "ops_per_second": round(result.get("ops_per_second", 0.0), 1),
        "latency_ms": {k: v / 1e3 for k, v in result["latency_us"].items()},
        "statuses": result["statuses"],
        "errors": result["errors"],
        "wrk_cpu_percent": round(result["wrk_cpu_percent"], 1),
        "cpu_percent": {k: round(v, 1) for k, v in result["cpu_percent"].items()},
    }


if __name__ == "__main__":
    main()
