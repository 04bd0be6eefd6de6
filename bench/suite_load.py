"""The suite's load: the sizes of its scenarios, wrk runs of S1-S3 against every target in
rounds, and what is read off the rounds (medians, per-round ratios, goals)."""

import resource
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.wrk import run_wrk, write_scripts

# The latency percentiles the report plots, and wrk's names for them.
PERCENTILES = (("50", "p50"), ("75", "p75"), ("90", "p90"), ("99", "p99"), ("99.9", "p999"))


@dataclass(frozen=True)
class Sizes:
    """How big each scenario is: FULL for `make bench`, SMOKE for the smoke run."""

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


def cpu_story(runs: list[dict[str, Any]]) -> str:
    """What our processes used in our last run, for the reason given beside a goal not met."""
    ours = [run for run in runs if run["target"] == "ours"]
    if not ours:
        return ""
    cpu = ours[-1].get("cpu_percent", {})
    parts = [f"{name} {share:.0f}%" for name, share in cpu.items()]
    return "CPU during our run (100% = one core): " + ", ".join(parts) if parts else ""
