"""The suite's scenarios, each a dict the report renders (runs, goals, notes): S1-S3 in rounds
against every target, S4 carts, S5 restock and S6 recovery each in a process of its own (S7,
the spike, is in `bench.suite_spike`). docs/performance.md says what each measures."""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.http_carts import lua_script, skus_by_shard
from bench.stack import ServeStack
from bench.suite_load import (
    PERCENTILES,
    Load,
    Sizes,
    cpu_story,
    goal,
    median_of,
    pairwise,
    rounds,
)
from bench.wrk import our_processes, run_wrk
from inventory_actors.shard.partitioning import load_or_create

ROOT = Path(__file__).resolve().parent.parent
SHARDS = 4
GOAL_S1_NOOP_SHARE = 0.8
GOAL_P99_MS = 50.0
GOAL_S2_POSTGRES = 1.0
GOAL_S2_S1_SHARE = 0.95
GOAL_S3_OPS = 100_000.0
GOAL_S3_POSTGRES = 5.0
GOAL_S5_SECONDS = 5.0
GOAL_S6_SECONDS = 2.0
Watched = dict[str, dict[str, list[int]]]


# -- S1-S3: wrk rounds against every target --------------------------------------------------------


def throughput_scenarios(
    load: Load,
    ours: str,
    base: dict[str, str],
    watched: Watched,
    sizes: Sizes,
    only: set[str],
) -> list[dict[str, Any]]:
    scenarios: list[dict[str, Any]] = []
    if "S1" in only:
        scenarios.append(s1_scenario(load, ours, base, watched, sizes))
    if "S2" in only:
        s1_runs: list[dict[str, Any]] = scenarios[0]["runs"] if scenarios else []
        scenarios.append(s2_scenario(load, ours, base, watched, sizes, s1_runs))
    if "S3" in only:
        scenarios.append(s3_scenario(load, ours, base, watched, sizes))
    return scenarios


def s1_scenario(
    load: Load, ours: str, base: dict[str, str], watched: Watched, sizes: Sizes
) -> dict[str, Any]:
    targets = {"ours": ours, "noop": ours} | base
    runs = rounds(load, "spread", targets, {"noop": "noop"}, watched, sizes.rounds)
    noop_share = pairwise(runs, "ours", "noop")
    p99 = median_of(runs, "ours", "p99_ms")
    cpu = cpu_story(runs)
    return {
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


def s2_scenario(
    load: Load,
    ours: str,
    base: dict[str, str],
    watched: Watched,
    sizes: Sizes,
    s1_runs: list[dict[str, Any]],
) -> dict[str, Any]:
    runs = rounds(load, "hot", {"ours": ours} | base, {}, watched, sizes.rounds)
    spread_ours = median_of(s1_runs, "ours") if s1_runs else float("nan")
    return {
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
                cpu_story(runs),
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


def s3_scenario(
    load: Load, ours: str, base: dict[str, str], watched: Watched, sizes: Sizes
) -> dict[str, Any]:
    runs = rounds(load, "batch", {"ours": ours} | base, {}, watched, sizes.rounds)
    return {
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
                f"replica; {cpu_story(runs)}",
            ),
            goal(
                "S3 >= 5x the PostgreSQL baseline doing the same batch",
                pairwise(runs, "ours", "postgres"),
                GOAL_S3_POSTGRES,
                ">=",
                "PostgreSQL also commits each batch once: a batch is group commit for it too",
            ),
        ],
        "notes": [],
    }


# -- S4: carts, ours alone -------------------------------------------------------------


def carts_scenario(stack: ServeStack, sizes: Sizes, tmp: Path) -> dict[str, Any]:
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


# -- S5 and S6: a benchmark module in a process of its own -----------------------------------------


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
