"""The benchmark suite: this service against what teams build instead, on the same machine, in
the same run, under the same load, so every comparison is a ratio from one run.

Targets: ours (the Serve app, 4 shards, one replica), noop (a no-op FastAPI route on the same
Serve ingress), and baselines that `bench/setup.sh` installs and starts: FastAPI + uvicorn over
PostgreSQL with a row-lock update (`postgres`), the same over SQLite (`sqlite`), Redis with a Lua
check-and-decrement (`redis`, not durable: an upper anchor). Throughput scenarios run in rounds,
every target once per round in the same order (A B A B ...), so drift cancels in the per-round
ratios.

  S1 single-op durable reservations over 10,000 SKUs, 64 connections (and the no-op endpoint)
  S2 the same, every request on one hot SKU
  S3 the batch endpoint, 1,000 reservations per request (8 connections)
  S4 five-line carts across the shards, reserved then committed (ours)
  S5 a 1,000,000-row Parquet restock (`bench.restock`)
  S6 a shard's recovery after SIGKILL: 1,000,000 SKU-locations, 100,000-record tail
  S7 a 10x spike, open loop, with rate limits on: accepted throughput and p99, rejections and
     their latency, nothing acknowledged lost

    python -m bench.suite [--smoke] [--rounds 2] [--seconds 15] [--only S1 S3] [--out DIR]
"""

import argparse
import contextlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import sku_name, source_state
from bench.http_throughput import (
    NOOP_PREFIX,
    noop_deployment,
    our_processes,
    post,
    run_wrk,
    serve_stack,
    stock,
    write_scripts,
    wrk_binary,
)
from bench.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
SETUP = ROOT / "bench" / "setup.sh"
ON_HAND = 1_000_000_000
BASELINES = ("postgres", "sqlite", "redis")
BASELINE_APPS = {
    "postgres": "bench.baselines.postgres_app:app",
    "sqlite": "bench.baselines.sqlite_app:app",
    "redis": "bench.baselines.redis_app:app",
}
SHARDS = 4
# The latency percentiles the report plots, and wrk's names for them.
PERCENTILES = (("50", "p50"), ("75", "p75"), ("90", "p90"), ("99", "p99"), ("99.9", "p999"))
GOAL_S1_NOOP_SHARE = 0.8
GOAL_P99_MS = 50.0
GOAL_S2_POSTGRES = 1.0
GOAL_S2_S1_SHARE = 0.95
GOAL_S3_OPS = 100_000.0
GOAL_S3_POSTGRES = 5.0
GOAL_S5_SECONDS = 5.0
GOAL_S6_SECONDS = 2.0
GOAL_S7_REJECT_MS = 100.0
# An accepted request waits at most the admission gate's queue bound (AdmissionLimits), then
# makes one shard call.
GOAL_S7_ACCEPTED_MS = 2_500.0


@dataclass(frozen=True)
class Sizes:
    rounds: int
    seconds: float
    skus: int
    connections: int
    batch_connections: int
    batch_size: int
    restock_rows: int
    recovery_levels: int
    recovery_tail: int
    spike_steady_rps: float
    spike_phase_seconds: float
    spike_limit_per_second: int


FULL = Sizes(2, 15.0, 10_000, 64, 8, 1_000, 1_000_000, 1_000_000, 100_000, 100.0, 5.0, 300)
SMOKE = Sizes(1, 2.0, 1_000, 16, 2, 100, 20_000, 20_000, 2_000, 50.0, 1.0, 150)


# -- the baselines --------------------------------------------------------------------------------


@contextlib.contextmanager
def baselines(state_dir: Path, skus: int) -> Iterator[dict[str, str]]:
    """PostgreSQL and Redis started by `bench/setup.sh`, a uvicorn app per baseline, each
    stocked with the same SKUs; stopped afterwards, whatever happens."""
    subprocess.run(["bash", str(SETUP), "start", str(state_dir)], check=True, timeout=900)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        env = {**os.environ, **_read_env(state_dir / "env")}
        env["SQLITE_PATH"] = str(state_dir / "sqlite" / "stock.db")
        (state_dir / "sqlite").mkdir(exist_ok=True)
        urls = {}
        for name in BASELINES:
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", BASELINE_APPS[name]]
            command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
            command += ["--log-level", "warning"]
            processes.append(subprocess.Popen(command, env=env, cwd=ROOT))
            urls[name] = f"http://127.0.0.1:{port}"
        for name, url in urls.items():
            _wait_http(f"{url}/noop", name)
            _stock_baseline(url, skus)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["bash", str(SETUP), "stop", str(state_dir)], check=False, timeout=300)


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip().strip('"') for key, value in pairs}


def _wait_http(url: str, name: str, timeout_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, data=b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the {name} baseline did not start")


def _stock_baseline(url: str, skus: int) -> None:
    body = json.dumps({"skus": [sku_name(i) for i in range(skus)], "available": ON_HAND})
    request = urllib.request.Request(
        f"{url}/admin/stock",
        data=body.encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=300) as answer:
        if answer.status != 200:
            raise RuntimeError(f"stocking {url} answered {answer.status}")


# -- throughput scenarios (wrk) -------------------------------------------------------------------


class Load:
    """The wrk scripts of S1-S3 (the same for every target) and one wrk run of them."""

    def __init__(self, key: str, sizes: Sizes, tmp: Path) -> None:
        self.sizes = sizes
        self.scripts = write_scripts(tmp, key, sizes.skus, sizes.batch_size)
        self.wrk_cpu_seconds = 0.0
        self.wall_seconds = 0.0

    def run(
        self, url: str, script: str, watched: dict[str, list[int]], seconds: float | None = None
    ) -> dict[str, Any]:
        batch = script == "batch"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = run_wrk(
            url,
            self.scripts[script],
            threads=2,
            connections=self.sizes.batch_connections if batch else self.sizes.connections,
            seconds=seconds or self.sizes.seconds,
            watched=watched,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        duration_s = result["duration_us"] / 1e6
        self.wrk_cpu_seconds += (after.ru_utime - before.ru_utime) + (
            after.ru_stime - before.ru_stime
        )
        self.wall_seconds += duration_s
        latency = {label: result["latency_us"][key] / 1e3 for label, key in PERCENTILES}
        ok = "200" if batch or script == "noop" else "201"
        statuses = result["statuses"]
        return {
            "throughput": (result["ops_ok"] if batch else result["requests"]) / duration_s,
            "requests_per_second": result["requests"] / duration_s,
            "p50_ms": latency["50"],
            "p99_ms": latency["99"],
            "latency_ms": latency,
            "errors": sum(n for kind, n in result["errors"].items() if kind != "status"),
            "non_2xx": sum(n for status, n in statuses.items() if status != ok),
            "cpu_percent": {k: round(v, 1) for k, v in result["cpu_percent"].items()},
        }


def rounds(
    load: Load,
    scenario: str,
    targets: dict[str, str],
    script_of: dict[str, str],
    watched: dict[str, dict[str, list[int]]],
    count: int,
) -> list[dict[str, Any]]:
    """Every target once per round, in the same order each round."""
    runs = []
    for round_number in range(1, count + 1):
        for target, url in targets.items():
            figures = load.run(url, script_of.get(target, scenario), watched.get(target, {}))
            runs.append({"target": target, "round": round_number} | figures)
            print(
                f"  {scenario:<6} round {round_number} {target:<9} "
                f"{figures['throughput']:>10,.0f}/s  p50 {figures['p50_ms']:.1f} ms  "
                f"p99 {figures['p99_ms']:.1f} ms  non-2xx {figures['non_2xx']}",
                flush=True,
            )
    return runs


def median_of(runs: list[dict[str, Any]], target: str, key: str = "throughput") -> float:
    values: list[float] = sorted(run[key] for run in runs if run["target"] == target)
    if not values:
        return float("nan")
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def pairwise(runs: list[dict[str, Any]], ours: str, other: str) -> float:
    """The median over rounds of ours / other, each ratio from the same round."""
    by_round: dict[int, dict[str, float]] = {}
    for run in runs:
        by_round.setdefault(run["round"], {})[run["target"]] = run["throughput"]
    ratios = sorted(
        pair[ours] / pair[other] for pair in by_round.values() if pair.get(other) and ours in pair
    )
    if not ratios:
        return float("nan")
    middle = len(ratios) // 2
    return ratios[middle] if len(ratios) % 2 else (ratios[middle - 1] + ratios[middle]) / 2


def goal(text: str, value: float, threshold: float, comparison: str, why: str) -> dict[str, Any]:
    met = value >= threshold if comparison == ">=" else value <= threshold
    return {
        "text": text,
        "value": round(value, 3),
        "threshold": threshold,
        "comparison": comparison,
        "met": bool(met),
        "why": "" if met else why,
    }


def _cpu_story(runs: list[dict[str, Any]]) -> str:
    ours = [run for run in runs if run["target"] == "ours"]
    if not ours:
        return ""
    cpu = ours[-1].get("cpu_percent", {})
    parts = [f"{name} {share:.0f}%" for name, share in cpu.items()]
    return "CPU during our run (100% = one core): " + ", ".join(parts) if parts else ""


# -- the scenarios --------------------------------------------------------------------------------


def throughput_scenarios(
    load: Load,
    ours: str,
    base: dict[str, str],
    watched: dict[str, dict[str, list[int]]],
    sizes: Sizes,
    only: set[str],
) -> list[dict[str, Any]]:
    scenarios: list[dict[str, Any]] = []
    if "S1" in only:
        targets = {"ours": ours, "noop": ours} | base
        runs = rounds(load, "spread", targets, {"noop": "noop"}, watched, sizes.rounds)
        noop_share = pairwise(runs, "ours", "noop")
        p99 = median_of(runs, "ours", "p99_ms")
        cpu = _cpu_story(runs)
        scenarios.append(
            {
                "id": "S1",
                "title": f"Single-op durable reservations, {sizes.skus:,} SKUs, "
                f"{sizes.connections} connections",
                "unit": "req/s",
                "runs": runs,
                "goals": [
                    goal(
                        "S1 >= 0.8x the no-op endpoint on the same ingress",
                        noop_share,
                        GOAL_S1_NOOP_SHARE,
                        ">=",
                        "every reservation is a replica step plus a shard call and an fsync "
                        f"the no-op does not make; {cpu} (docs/performance.md)",
                    ),
                    goal(
                        "S1 p99 <= 50 ms",
                        p99,
                        GOAL_P99_MS,
                        "<=",
                        f"64 connections queue at one replica on 2 cores; {cpu}",
                    ),
                ],
                "notes": [
                    "ours / postgres is reported as it is (docs/performance.md says why "
                    "where it is below 1)."
                ],
            }
        )
    if "S2" in only:
        runs = rounds(load, "hot", {"ours": ours} | base, {}, watched, sizes.rounds)
        s1_runs: list[dict[str, Any]] = scenarios[0]["runs"] if scenarios else []
        spread_ours = median_of(s1_runs, "ours") if s1_runs else float("nan")
        scenarios.append(
            {
                "id": "S2",
                "title": "Single-op durable reservations, every request on one hot SKU",
                "unit": "req/s",
                "runs": runs,
                "goals": [
                    goal(
                        "S2 >= 1.0x the PostgreSQL baseline on the hot SKU",
                        pairwise(runs, "ours", "postgres"),
                        GOAL_S2_POSTGRES,
                        ">=",
                        _cpu_story(runs),
                    ),
                    goal(
                        "S2 >= 0.95x our own S1",
                        median_of(runs, "ours") / spread_ours,
                        GOAL_S2_S1_SHARE,
                        ">=",
                        "a hot SKU lives on one shard: one fsync stream instead of four",
                    ),
                ],
                "notes": [],
            }
        )
    if "S3" in only:
        runs = rounds(load, "batch", {"ours": ours} | base, {}, watched, sizes.rounds)
        scenarios.append(
            {
                "id": "S3",
                "title": f"Batch endpoint, {sizes.batch_size:,} reservations per request, "
                f"{sizes.batch_connections} connections",
                "unit": "ops/s",
                "runs": runs,
                "goals": [
                    goal(
                        "S3 >= 100,000 durable operations/s",
                        median_of(runs, "ours"),
                        GOAL_S3_OPS,
                        ">=",
                        f"decoding and answering 1,000 JSON operations per request in one "
                        f"replica; {_cpu_story(runs)}",
                    ),
                    goal(
                        "S3 >= 5x the PostgreSQL baseline doing the same batch",
                        pairwise(runs, "ours", "postgres"),
                        GOAL_S3_POSTGRES,
                        ">=",
                        "PostgreSQL also commits each batch once: a batch is group commit for "
                        "it too",
                    ),
                ],
                "notes": [],
            }
        )
    return scenarios


def carts_scenario(stack: Any, sizes: Sizes, tmp: Path) -> dict[str, Any]:
    from bench.http_carts import lua_script, skus_by_shard  # noqa: PLC0415
    from inventory_actors.shard.partitioning import load_or_create  # noqa: PLC0415

    partition = load_or_create(stack.data_dir, SHARDS)
    script = tmp / "carts.lua"
    script.write_text(lua_script(skus_by_shard(partition, sizes.skus, SHARDS), stack.key))
    watched = {"replica": our_processes("ServeReplica:"), "shards": our_processes("ShardActor")}
    runs = []
    for round_number in range(1, sizes.rounds + 1):
        result = run_wrk(
            stack.url,
            script,
            threads=2,
            connections=sizes.connections,
            seconds=sizes.seconds,
            watched=watched,
        )
        duration_s = result["duration_us"] / 1e6
        runs.append(
            {
                "target": "ours",
                "round": round_number,
                "throughput": result["ops_ok"] / duration_s,
                "requests_per_second": result["requests"] / duration_s,
                "p50_ms": result["latency_us"]["p50"] / 1e3,
                "p99_ms": result["latency_us"]["p99"] / 1e3,
                "latency_ms": {
                    label: result["latency_us"][key] / 1e3 for label, key in PERCENTILES
                },
                "non_2xx": sum(n for s, n in result["statuses"].items() if s not in ("200", "201")),
            }
        )
    return {
        "id": "S4",
        "title": f"Five-line carts across {SHARDS} shards, reserved then committed",
        "unit": "carts/s",
        "runs": runs,
        "goals": [],
        "notes": ["Latency is per request (a reserve or a commit); a cart is one of each."],
    }


def spike_scenario(stack: Any, sizes: Sizes) -> dict[str, Any]:
    """S7 on a deployment with rate limits on (the protection a spike meets) and the default
    admission control. The generator runs in a child process at the Ray workers' niceness."""
    from bench.spike import ReservationLoad, percentile, run_in_child  # noqa: PLC0415
    from serve_app.middleware.rate_limit import RateLimits, RoleLimit  # noqa: PLC0415

    skus = [f"spike-{i:05d}" for i in range(200)]
    ops = [
        {"op": "adjust", "sku": sku, "location": "L01", "delta": ON_HAND, "reason": "received"}
        for sku in skus
    ]
    status, _ = post(f"{stack.url}/v1/batch", stack.key, {"operations": ops})
    if status != 200:
        raise RuntimeError(f"stocking the spike's SKUs answered {status}")
    limit = sizes.spike_limit_per_second
    limits = RateLimits(admin=RoleLimit(limit, limit))
    stack.redeploy_with(limits)
    load = ReservationLoad(
        f"{stack.url}/v1/reservations",
        {"Authorization": f"Bearer {stack.key}"},
        skus,
        steady_rps=sizes.spike_steady_rps,
        phase_seconds=sizes.spike_phase_seconds,
    )
    result = run_in_child(load)
    accepted = sum(1 for answer in result.answers if answer.status == 201)
    reserved = _reserved(stack, skus)
    summary = result.summary()
    spike = summary["spike"]
    phases = [summary[phase] for phase in ("steady", "spike", "after")]
    rejected = [answer for answer in result.answers if answer.status in (429, 503)]
    run = {
        "target": "ours",
        "round": 1,
        "value": spike["accepted_rps"],
        "offered_rps": spike["offered_rps"],
        "accepted_rps": spike["accepted_rps"],
        "accepted_p99_ms": spike["accepted_p99_ms"],
        "steady_p99_ms": summary["steady"]["accepted_p99_ms"],
        "after_p99_ms": summary["after"]["accepted_p99_ms"],
        "rejected": spike["rejected"],
        "rejected_429": spike["rejected_429"],
        # Every phase's refusals: the late ones of a spike fall in the phase after it.
        "rejected_p99_ms": round(percentile([a.seconds * 1e3 for a in rejected], 99), 1),
        "rejected_without_retry_after": sum(p["rejected_without_retry_after"] for p in phases),
        "rejected_not_problem": sum(p["rejected_not_problem"] for p in phases),
        "other_failures": sum(p["other_failures"] for p in phases),
        "generator_late_p99_ms": summary["generator_late_p99_ms"],
        "acknowledged": accepted,
        "lost": accepted - reserved,
    }
    return {
        "id": "S7",
        "title": f"10x spike: {sizes.spike_steady_rps:,.0f} -> "
        f"{sizes.spike_steady_rps * 10:,.0f} req/s open loop, rate limit {limit}/s",
        "unit": "accepted req/s",
        "runs": [run],
        "goals": [
            goal("S7 no acknowledged change lost", run["lost"], 0, "<=", "see the run"),
            goal(
                "S7 rejections answered within 100 ms (p99)",
                run["rejected_p99_ms"],
                GOAL_S7_REJECT_MS,
                "<=",
                "the load generator shares the 2 cores",
            ),
            goal(
                "S7 every rejection a problem with Retry-After, no other failure",
                run["rejected_without_retry_after"]
                + run["rejected_not_problem"]
                + run["other_failures"],
                0,
                "<=",
                "see the run",
            ),
            goal(
                f"S7 accepted p99 <= {GOAL_S7_ACCEPTED_MS:,.0f} ms during the spike",
                run["accepted_p99_ms"],
                GOAL_S7_ACCEPTED_MS,
                "<=",
                "the load generator shares the 2 cores",
            ),
        ],
        "notes": [f"phases: {json.dumps(summary)}"],
    }


# Reading back after the spike: the key may still be over its rate limit; wait as told.
READ_BACK_SECONDS_MAX = 120.0


def _reserved(stack: Any, skus: list[str]) -> int:
    """Units reserved on `skus` now, read back through the API (with the spike's key, so a
    429 is waited out for its `Retry-After`)."""
    deadline = time.monotonic() + READ_BACK_SECONDS_MAX
    total = 0
    for sku in skus:
        request = urllib.request.Request(
            f"{stack.url}/v1/skus/{sku}", headers={"Authorization": f"Bearer {stack.key}"}
        )
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    total += json.loads(answer.read())["totals"]["reserved"]
                break
            except urllib.error.HTTPError as error:
                if error.code != 429 or time.monotonic() > deadline:
                    raise
                time.sleep(float(error.headers.get("Retry-After", "1")))
    return total


def subprocess_scenario(scenario: str, module: str, *args: str) -> dict[str, Any]:
    """Run a benchmark module in its own process (its own Ray); its JSON line."""
    command = [sys.executable, "-m", module, *args]
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix=f"ray-{scenario.lower()}-")}
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=3_600, env=env, check=False
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"benchmark"')]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{module} failed ({done.returncode}): {done.stderr[-800:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def restock_scenario(sizes: Sizes) -> dict[str, Any]:
    rows = str(sizes.restock_rows)
    figures = subprocess_scenario("S5", "bench.restock", "--rows", rows)
    run = {
        "target": "ours",
        "round": 1,
        "value": figures["delta_seconds"],
        "rows_per_second": figures["delta_rows_per_second"],
        "cli_seconds": figures["cli_seconds"],
        "job_peak_rss_mib": figures["job_peak_rss_mib"],
    }
    return {
        "id": "S5",
        "title": f"{sizes.restock_rows:,}-row Parquet restock (a Ray task, {SHARDS} shards)",
        "unit": "s",
        "lower_is_better": True,
        "runs": [run],
        "goals": [
            goal(
                "S5 <= 5 s",
                run["value"],
                GOAL_S5_SECONDS,
                "<=",
                "reading, checking and splitting the file (docs/restock.md)",
            )
        ],
        "notes": ["`inventory restock` wall time includes starting a Ray driver."],
    }


def recovery_scenario(sizes: Sizes) -> dict[str, Any]:
    figures = subprocess_scenario(
        "S6",
        "bench.recovery_kill",
        "--levels",
        str(sizes.recovery_levels),
        "--tail",
        str(sizes.recovery_tail),
    )
    run = {
        "target": "ours",
        "round": 1,
        "value": figures["seconds"],
        "replay_seconds": figures["replay_seconds"],
    }
    return {
        "id": "S6",
        "title": f"Shard recovery after SIGKILL: {figures['levels']:,} SKU-locations, "
        f"{figures['tail_records']:,}-record tail",
        "unit": "s",
        "lower_is_better": True,
        "runs": [run],
        "goals": [
            goal(
                "S6 <= 2 s",
                run["value"],
                GOAL_S6_SECONDS,
                "<=",
                f"replaying the snapshot and tail took {run['replay_seconds']:.2f} s; the "
                "rest is Ray restarting the actor's process",
            )
        ],
        "notes": [],
    }


# -- the run --------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import ray  # noqa: PLC0415

    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "python": platform.python_version(),
        "ray": ray.__version__,
    }


def wrk_version() -> str:
    done = subprocess.run([wrk_binary(), "-v"], capture_output=True, text=True, check=False)
    first = (done.stdout or done.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk"


def run_suite(sizes: Sizes, only: set[str], smoke: bool) -> dict[str, Any]:
    started = datetime.now(UTC)
    load_info: dict[str, Any] = {
        "tool": wrk_version(),
        "threads": 2,
        "connections": sizes.connections,
        "seconds": sizes.seconds,
    }
    results: dict[str, Any] = {
        "date": started.strftime("%Y-%m-%d"),
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": source_state(),
        "machine": machine(),
        "mode": "smoke" if smoke else "full",
        "load_generator": load_info,
        "scenarios": [],
    }
    scenarios: list[dict[str, Any]] = results["scenarios"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-suite-"))
    tmp.chmod(0o755)  # PostgreSQL runs as its own user and must reach its directory in here
    try:
        if only & {"S1", "S2", "S3", "S4", "S7"}:
            scenarios += http_scenarios(sizes, only, tmp, load_info)
        if "S5" in only:
            scenarios.append(restock_scenario(sizes))
        if "S6" in only:
            scenarios.append(recovery_scenario(sizes))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def http_scenarios(
    sizes: Sizes, only: set[str], tmp: Path, load_info: dict[str, Any]
) -> list[dict[str, Any]]:
    scenarios: list[dict[str, Any]] = []
    wants_baselines = bool(only & {"S1", "S2", "S3"})
    with contextlib.ExitStack() as stack_of:
        base = (
            stack_of.enter_context(baselines(tmp / "baselines", sizes.skus))
            if wants_baselines
            else {}
        )
        stack = stack_of.enter_context(serve_stack(SHARDS, 1, default_proxy=False))
        from ray import serve  # noqa: PLC0415

        from serve_app.deployment import APP_NAME  # noqa: PLC0415

        serve.run(noop_deployment().bind(), name="noop", route_prefix=NOOP_PREFIX)
        stock(stack.url, stack.key, sizes.skus)
        load = Load(stack.key, sizes, tmp)
        watched = {
            "ours": {
                "replica": our_processes(f"ServeReplica:{APP_NAME}"),
                "shards": our_processes("ShardActor"),
            }
        }
        load.run(stack.url, "spread", watched["ours"], seconds=min(2.0, sizes.seconds))  # warm
        scenarios += throughput_scenarios(load, stack.url, base, watched, sizes, only)
        if "S4" in only:
            scenarios.append(carts_scenario(stack, sizes, tmp))
        if "S7" in only:
            scenarios.append(spike_scenario(stack, sizes))
        if load.wall_seconds:
            load_info["cpu_share"] = round(load.wrk_cpu_seconds / load.wall_seconds / 2, 3)
    return scenarios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="every scenario for a few seconds")
    parser.add_argument("--rounds", type=int, help="rounds of the throughput scenarios")
    parser.add_argument("--seconds", type=float, help="seconds per wrk run")
    parser.add_argument("--only", nargs="+", help="scenario ids (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else FULL
    if args.rounds or args.seconds:
        sizes = Sizes(
            **(
                sizes.__dict__
                | ({"rounds": args.rounds} if args.rounds else {})
                | ({"seconds": args.seconds} if args.seconds else {})
            )
        )
    only = set(args.only or ["S1", "S2", "S3", "S4", "S5", "S6", "S7"])
    wrk_binary()
    results = run_suite(sizes, only, args.smoke)
    from bench.report import write_report  # noqa: PLC0415

    out = args.out / "smoke" if args.smoke else args.out
    for path in write_report(results, out):
        print(f"wrote {path}")
    failed = [g["text"] for s in results["scenarios"] for g in s["goals"] if not g["met"]]
    print(f"goals not met: {failed}" if failed else "every goal met")


if __name__ == "__main__":
    main()
