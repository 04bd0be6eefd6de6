"""The benchmark suite: this service against what teams build instead, on the same machine, in
the same run, under the same load. Targets, scenarios S1-S7 and method: docs/performance.md.

    python -m bench.suite [--smoke] [--rounds 2] [--seconds 15] [--only S1 S3] [--out DIR]
"""

import argparse
import contextlib
import os
import platform
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.baselines.servers import baselines
from bench.common import source_state
from bench.stack import NOOP_PREFIX, noop_deployment, serve_stack, stock
from bench.suite_load import FULL, SMOKE, Load, Sizes
from bench.suite_scenarios import (
    SHARDS,
    carts_scenario,
    recovery_scenario,
    restock_scenario,
    throughput_scenarios,
)
from bench.suite_spike import spike_scenario
from bench.wrk import our_processes, wrk_binary

ROOT = Path(__file__).resolve().parent.parent


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
