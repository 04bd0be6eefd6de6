"""The benchmark report's figures: per scenario and target the median over rounds with its
range, ours against each baseline pairwise (the median of the per-round ratios ours_r /
baseline_r, never a ratio of medians), the goals; and how both renderings name and write them."""

import math
import operator
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

OURS = "ours"
KNOWN_TARGETS = ("ours", "noop", "postgres", "sqlite", "redis")
TARGET_LABELS = {
    "ours": "ours",
    "noop": "no-op endpoint",
    "postgres": "PostgreSQL",
    "sqlite": "SQLite",
    "redis": "Redis",
}
# Per-run fields with a place of their own in the tables; any other numeric field is an "extra".
STANDARD_RUN_FIELDS = frozenset(
    {
        "target",
        "round",
        "throughput",
        "value",
        "p50_ms",
        "p99_ms",
        "errors",
        "non_2xx",
        "latency_ms",
    }
)
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
SMOKE_BANNER = "smoke run: figures are not meaningful"
DASH = "—"


# --- summary ------------------------------------------------------------------------------------


def summarize(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The summary of every scenario, keyed by scenario id (in the runner's order)."""
    summaries: dict[str, dict[str, Any]] = {}
    for index, scenario in enumerate(_scenarios(results)):
        summary = summarize_scenario(scenario, index)
        key = summary["id"]
        suffix = 2
        while key in summaries:  # a duplicated id must not hide a scenario
            key = f"{summary['id']}#{suffix}"
            suffix += 1
        summary["id"] = key
        summaries[key] = summary
    return summaries


def summarize_scenario(scenario: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
    """Medians, ranges, pairwise ratios and goals of one scenario."""
    runs = [run for run in scenario.get("runs") or [] if isinstance(run, Mapping)]
    if any(finite_number(run.get("throughput")) is not None for run in runs):
        kind, metric = "throughput", "throughput"
    elif any(finite_number(run.get("value")) is not None for run in runs):
        kind, metric = "value", "value"
    else:
        kind, metric = "not run", ""
    unit = str(scenario.get("unit") or ("req/s" if kind == "throughput" else ""))
    notes = [str(note) for note in scenario.get("notes") or []]
    by_target = _runs_by_target(runs)
    targets = {
        target: _summarize_target(target_runs, metric) for target, target_runs in by_target.items()
    }
    ratios: dict[str, dict[str, Any]] = {}
    if metric:
        ours = _per_round(by_target.get(OURS, []), metric)
        for baseline, baseline_runs in by_target.items():
            if baseline != OURS:
                ratios[baseline] = _pairwise_ratio(ours, _per_round(baseline_runs, metric))
    goals = [_goal(goal) for goal in scenario.get("goals") or [] if isinstance(goal, Mapping)]
    return {
        "id": str(scenario.get("id") or f"scenario-{index + 1}"),
        "title": str(scenario.get("title") or ""),
        "kind": kind,
        "unit": unit,
        "lower_is_better": bool(scenario.get("lower_is_better", False)),
        "not_run_reason": (" ".join(notes) or "no runs recorded") if kind == "not run" else None,
        "notes": notes,
        "targets": targets,
        "ratios": ratios,
        "goals": goals,
        "goals_met": sum(1 for goal in goals if goal["status"] == "MET"),
        "goals_total": len(goals),
    }


def _scenarios(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in results.get("scenarios") or [] if isinstance(s, Mapping)]


def finite_number(value: object) -> float | None:
    """A finite number, or None (booleans, strings, NaN and infinities are not figures)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ordered_targets(targets: Iterable[str]) -> list[str]:
    """Ours first, then the known baselines in their usual order, then any other target."""
    present = set(targets)
    known = [target for target in KNOWN_TARGETS if target in present]
    return known + sorted(present - set(KNOWN_TARGETS))


def _runs_by_target(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        grouped.setdefault(str(run.get("target") or "unknown"), []).append(run)
    return {target: grouped[target] for target in ordered_targets(grouped)}


def _per_round(runs: Sequence[Mapping[str, Any]], metric: str) -> dict[str, float]:
    """One figure per round (the median if a round was repeated); runs without a round number
    are numbered by their order."""
    rounds: dict[str, list[float]] = {}
    for position, run in enumerate(runs, start=1):
        value = finite_number(run.get(metric))
        if value is not None:
            number = run.get("round")
            rounds.setdefault(str(position if number is None else number), []).append(value)
    return {number: statistics.median(values) for number, values in rounds.items()}


def _pairwise_ratio(ours: Mapping[str, float], baseline: Mapping[str, float]) -> dict[str, Any]:
    """ours_r / baseline_r for each round r both measured; their median and range."""
    per_round = {
        number: ours[number] / baseline[number]
        for number in ours
        if number in baseline and baseline[number] > 0
    }
    return {**_spread(list(per_round.values())), "rounds": len(per_round), "per_round": per_round}


def _summarize_target(runs: Sequence[Mapping[str, Any]], metric: str) -> dict[str, Any]:
    values = list(_per_round(runs, metric).values()) if metric else []

    def median_of(field: str) -> float | None:
        found = [v for run in runs if (v := finite_number(run.get(field))) is not None]
        return statistics.median(found) if found else None

    def total_of(field: str) -> float | None:
        found = [v for run in runs if (v := finite_number(run.get(field))) is not None]
        return sum(found) if found else None

    latencies: dict[str, list[float]] = {}
    extras: dict[str, list[float]] = {}
    for run in runs:
        table = run.get("latency_ms")
        if isinstance(table, Mapping):
            for percentile, ms in table.items():
                if (value := finite_number(ms)) is not None:
                    latencies.setdefault(_percentile_key(percentile), []).append(value)
        for field, raw in run.items():
            if field not in STANDARD_RUN_FIELDS and (value := finite_number(raw)) is not None:
                extras.setdefault(str(field), []).append(value)
    return {
        **_spread(values),
        "rounds": len(values),
        "p50_ms": median_of("p50_ms"),
        "p99_ms": median_of("p99_ms"),
        "errors": total_of("errors"),
        "non_2xx": total_of("non_2xx"),
        "latency_ms": {
            key: statistics.median(latencies[key])
            for key in sorted(latencies, key=percentile_order)
        },
        "extra": {field: _spread(extras[field]) for field in sorted(extras)},
    }


def _percentile_key(percentile: object) -> str:
    try:
        return f"{float(str(percentile)):g}"
    except ValueError:
        return str(percentile)


def percentile_order(key: str) -> tuple[float, str]:
    try:
        return (float(key), key)
    except ValueError:
        return (math.inf, key)


def _goal(goal: Mapping[str, Any]) -> dict[str, Any]:
    """The runner's verdict; computed from value, threshold and comparison if it gave none."""
    value, threshold = finite_number(goal.get("value")), finite_number(goal.get("threshold"))
    comparison = str(goal.get("comparison") or "")
    met = goal.get("met")
    if not isinstance(met, bool) and value is not None and threshold is not None:
        compare = COMPARISONS.get(comparison)
        met = compare(value, threshold) if compare else None
    status = "MET" if met is True else "NOT MET" if met is False else "NOT EVALUATED"
    return {
        "text": str(goal.get("text") or ""),
        "status": status,
        "met": met if isinstance(met, bool) else None,
        "value": value,
        "threshold": threshold,
        "comparison": comparison,
        "why": str(goal.get("why") or ""),
    }


# --- names and figures as both renderings write them ---------------------------------------------


def report_date(results: Mapping[str, Any]) -> str:
    raw = str(results.get("date") or str(results.get("started_at") or "")[:10])
    safe = "".join(c for c in raw if c.isalnum() or c in "-_.")
    return safe or datetime.now(UTC).date().isoformat()


def is_smoke(results: Mapping[str, Any]) -> bool:
    return str(results.get("mode") or "").lower() == "smoke"


def short_source(results: Mapping[str, Any]) -> str:
    """The commit, marked when the tree had changes (the JSON keeps the full description)."""
    source = str(results.get("source") or "unknown source")
    commit, _, changes = source.partition(" + ")
    return f"{commit} with uncommitted changes" if changes else commit


def target_label(target: str) -> str:
    return TARGET_LABELS.get(target, target)


def ratio_text(value: object, suffix: str = "x") -> str:
    number = finite_number(value)
    if number is None:
        return DASH
    return (f"{number:.2f}" if number >= 0.01 else f"{number:.2g}") + suffix


def all_targets(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return ordered_targets(t for summary in summaries.values() for t in summary["targets"])
