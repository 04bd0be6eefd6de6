"""The benchmark suite's report: a markdown page, a diffable JSON and two plots per run.

`write_report(results, out_dir)` renders what the suite's runner measured: our service against
its baselines (a no-op endpoint on our own ingress, PostgreSQL row locks, SQLite, Redis Lua).
Per scenario and target it takes the median over rounds, and it compares ours with each baseline
pairwise: the median of the per-round ratios ours_r / baseline_r, never a ratio of medians.

    python -m bench.report RESULTS.json [--out bench/results]

re-renders a saved results JSON: the runner's, or a report's own JSON (its summary is recomputed).
"""

import argparse
import json
import math
import operator
import statistics
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

OURS = "ours"
KNOWN_TARGETS = ("ours", "noop", "postgres", "sqlite", "redis")
TARGET_LABELS = {
    "ours": "ours",
    "noop": "no-op endpoint",
    "postgres": "PostgreSQL",
    "sqlite": "SQLite",
    "redis": "Redis",
}
TARGET_COLORS = {
    "ours": "#1f77b4",
    "noop": "#7f7f7f",
    "postgres": "#2ca02c",
    "sqlite": "#ff7f0e",
    "redis": "#d62728",
}
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
PERCENTILES = ("50", "75", "90", "99", "99.9")
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
FIGURE_SIZE = (16.0, 9.0)  # inches; at DPI, 1600x900 pixels
DPI = 100
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
    if any(_num(run.get("throughput")) is not None for run in runs):
        kind, metric = "throughput", "throughput"
    elif any(_num(run.get("value")) is not None for run in runs):
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


def _num(value: object) -> float | None:
    """A finite number, or None (booleans, strings, NaN and infinities are not figures)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "min": None, "max": None}
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _ordered(targets: Iterable[str]) -> list[str]:
    """Ours first, then the known baselines in their usual order, then any other target."""
    present = set(targets)
    known = [target for target in KNOWN_TARGETS if target in present]
    return known + sorted(present - set(KNOWN_TARGETS))


def _runs_by_target(runs: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for run in runs:
        grouped.setdefault(str(run.get("target") or "unknown"), []).append(run)
    return {target: grouped[target] for target in _ordered(grouped)}


def _per_round(runs: Sequence[Mapping[str, Any]], metric: str) -> dict[str, float]:
    """One figure per round (the median if a round was repeated); runs without a round number
    are numbered by their order."""
    rounds: dict[str, list[float]] = {}
    for position, run in enumerate(runs, start=1):
        value = _num(run.get(metric))
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
        found = [v for run in runs if (v := _num(run.get(field))) is not None]
        return statistics.median(found) if found else None

    def total_of(field: str) -> float | None:
        found = [v for run in runs if (v := _num(run.get(field))) is not None]
        return sum(found) if found else None

    latencies: dict[str, list[float]] = {}
    extras: dict[str, list[float]] = {}
    for run in runs:
        table = run.get("latency_ms")
        if isinstance(table, Mapping):
            for percentile, ms in table.items():
                if (value := _num(ms)) is not None:
                    latencies.setdefault(_percentile_key(percentile), []).append(value)
        for field, raw in run.items():
            if field not in STANDARD_RUN_FIELDS and (value := _num(raw)) is not None:
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
            for key in sorted(latencies, key=_percentile_order)
        },
        "extra": {field: _spread(extras[field]) for field in sorted(extras)},
    }


def _percentile_key(percentile: object) -> str:
    try:
        return f"{float(str(percentile)):g}"
    except ValueError:
        return str(percentile)


def _percentile_order(key: str) -> tuple[float, str]:
    try:
        return (float(key), key)
    except ValueError:
        return (math.inf, key)


def _goal(goal: Mapping[str, Any]) -> dict[str, Any]:
    """The runner's verdict; computed from value, threshold and comparison if it gave none."""
    value, threshold = _num(goal.get("value")), _num(goal.get("threshold"))
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


# --- writing ------------------------------------------------------------------------------------


def short_source(results: Mapping[str, Any]) -> str:
    """The commit, marked when the tree had changes (the JSON keeps the full description)."""
    source = str(results.get("source") or "unknown source")
    commit, _, changes = source.partition(" + ")
    return f"{commit} with uncommitted changes" if changes else commit


def write_report(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write out_dir/<date>.md, out_dir/<date>.json and PNG plots out_dir/<date>-throughput.png,
    out_dir/<date>-latency.png; return the paths written."""
    data: dict[str, Any] = _json_safe({k: v for k, v in results.items() if k != "summary"})
    summaries = summarize(data)
    date = _report_date(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path = out_dir / f"{date}.md"
    json_path = out_dir / f"{date}.json"
    throughput_path = out_dir / f"{date}-throughput.png"
    latency_path = out_dir / f"{date}-latency.png"

    document = {**data, "summary": _json_safe(summaries)}
    json_path.write_text(
        json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8"
    )
    plots = {"throughput": throughput_path.name, "latency": latency_path.name}
    markdown = render_markdown(data, summaries, plots, json_path.name)
    md_path.write_text(markdown, encoding="utf-8")
    _plot_throughput(data, summaries, throughput_path)
    _plot_latency(data, summaries, latency_path)
    return [md_path, json_path, throughput_path, latency_path]


def _json_safe(value: Any) -> Any:
    """A copy in plain JSON types: NaN and infinities become null, tuples lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, str | int):
        return value
    return str(value)


def _report_date(results: Mapping[str, Any]) -> str:
    raw = str(results.get("date") or str(results.get("started_at") or "")[:10])
    safe = "".join(c for c in raw if c.isalnum() or c in "-_.")
    return safe or datetime.now(UTC).date().isoformat()


def _is_smoke(results: Mapping[str, Any]) -> bool:
    return str(results.get("mode") or "").lower() == "smoke"


# --- markdown -----------------------------------------------------------------------------------


def render_markdown(
    results: Mapping[str, Any],
    summaries: Mapping[str, Mapping[str, Any]],
    plots: Mapping[str, str],
    json_name: str,
) -> str:
    date = _report_date(results)
    source = short_source(results)
    lines = [f"# Inventory service benchmarks, {date} (`{source}`)", ""]
    if _is_smoke(results):
        lines += [
            f"> **{SMOKE_BANNER.capitalize()}.** A short check that every scenario runs; "
            "do not quote or compare these numbers.",
            "",
        ]
    lines += [
        f"Started {results.get('started_at') or 'at an unrecorded time'}; "
        f"mode {results.get('mode') or 'unrecorded'}; raw figures and summary: [{json_name}]"
        f"({json_name}).",
        "",
        f"**Machine:** {_machine_line(results.get('machine'))}",
        "",
        f"**Load generator:** {_load_line(results.get('load_generator'))}",
        "",
        "## Summary",
        "",
    ]
    lines += _summary_table(summaries)
    lines += ["", *_goal_tally(summaries), ""]
    lines += [
        "## Plots",
        "",
        f"![Throughput per scenario]({plots['throughput']})",
        "",
        f"![Latency distribution per scenario]({plots['latency']})",
        "",
        f"Files: [{plots['throughput']}]({plots['throughput']}), "
        f"[{plots['latency']}]({plots['latency']}).",
        "",
    ]
    for summary in summaries.values():
        lines += _scenario_section(summary)
    lines += _method_section(results)
    return "\n".join(lines).rstrip("\n") + "\n"


def _machine_line(machine: object) -> str:
    if not isinstance(machine, Mapping):
        return "not recorded."
    known = {"cpus", "memory_gib", "python", "ray"}
    parts = []
    if (cpus := machine.get("cpus")) is not None:
        parts.append(f"{cpus} CPUs")
    if (memory := _num(machine.get("memory_gib"))) is not None:
        parts.append(f"{memory:.1f} GiB memory")
    if machine.get("python"):
        parts.append(f"Python {machine['python']}")
    if machine.get("ray"):
        parts.append(f"Ray {machine['ray']}")
    parts += [f"{key} {machine[key]}" for key in sorted(machine) if key not in known]
    return (", ".join(parts) or "not recorded") + "."


def _load_line(load: object) -> str:
    if not isinstance(load, Mapping):
        return "not recorded."
    known = {"tool", "threads", "connections", "seconds", "cpu_share"}
    parts = [str(load.get("tool") or "unnamed tool")]
    if load.get("threads") is not None:
        parts.append(f"{load['threads']} threads")
    if load.get("connections") is not None:
        parts.append(f"{load['connections']} connections")
    if load.get("seconds") is not None:
        parts.append(f"{load['seconds']} s per run")
    parts += [f"{key} {load[key]}" for key in sorted(load) if key not in known]
    line = ", ".join(parts)
    share = _num(load.get("cpu_share"))
    if share is not None:
        percent = share * 100 if share <= 1 else share
        line += (
            f"; the load generator shares the machine and took {percent:.0f}% of its CPU "
            f"(cpu_share {share:g})"
        )
    else:
        line += "; the load generator's CPU share was not recorded"
    return line + "."


def _all_targets(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return _ordered(t for summary in summaries.values() for t in summary["targets"])


def _summary_table(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not summaries:
        return ["No scenarios in this run."]
    targets = _all_targets(summaries) or [OURS]
    headers = ["Scenario", "Unit", *(_label(t) for t in targets), "Ratios (ours / baseline)"]
    headers.append("Goals")
    rows = []
    for summary in summaries.values():
        name = f"{summary['id']} {summary['title']}".strip()
        if summary["kind"] == "not run":
            cells = ["not run", *([DASH] * (len(targets) - 1))]
            ratios = DASH
        else:
            cells = [
                _fmt(summary["targets"][t]["median"]) if t in summary["targets"] else DASH
                for t in targets
            ]
            ratios = (
                "; ".join(
                    f"{_ratio(r['median'])} vs {b}"
                    for b, r in summary["ratios"].items()
                    if r["median"] is not None
                )
                or DASH
            )
        unit = summary["unit"] + (" (lower is better)" if summary["lower_is_better"] else "")
        rows.append([name, unit or DASH, *cells, ratios, _goal_cell(summary)])
    return _md_table(headers, rows)


def _goal_cell(summary: Mapping[str, Any]) -> str:
    goals = summary["goals"]
    if not goals:
        return "no goals"
    cell = f"{summary['goals_met']}/{summary['goals_total']} met"
    missed = [goal["text"] for goal in goals if goal["status"] != "MET"]
    if missed:
        cell += "; NOT MET: " + "; ".join(missed)
    return cell


def _goal_tally(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    met = sum(s["goals_met"] for s in summaries.values())
    total = sum(s["goals_total"] for s in summaries.values())
    if total == 0:
        return ["No goals were set for this run."]
    missed = [
        f"{s['id']}: {goal['text']}"
        for s in summaries.values()
        for goal in s["goals"]
        if goal["status"] != "MET"
    ]
    if not missed:
        return [f"**All {total} goals met.**"]
    lines = [f"**{met} of {total} goals met. Not met:**", ""]
    return lines + [f"- {text}" for text in missed]


def _scenario_section(summary: Mapping[str, Any]) -> list[str]:
    title = f" {DASH} {summary['title']}" if summary["title"] else ""
    lines = [f"## {summary['id']}{title}", ""]
    if summary["kind"] == "not run":
        lines += [f"**Not run:** {summary['not_run_reason']}", ""]
    else:
        lines += [*_target_table(summary), "", *_ratio_lines(summary), ""]
    lines += _goal_lines(summary["goals"])
    # A scenario that did not run gives its notes as the reason, above.
    notes: Sequence[str] = summary["notes"] if summary["kind"] != "not run" else []
    if notes:
        lines += ["Notes:", "", *(f"- {note}" for note in notes), ""]
    return lines


def _target_table(summary: Mapping[str, Any]) -> list[str]:
    targets: Mapping[str, Mapping[str, Any]] = summary["targets"]
    throughput = summary["kind"] == "throughput"
    # Latency and error columns always for throughput scenarios, else only where there are data.
    fields = [
        (field, header)
        for field, header in (
            ("p50_ms", "p50 ms"),
            ("p99_ms", "p99 ms"),
            ("errors", "Errors (all rounds)"),
            ("non_2xx", "Non-2xx (all rounds)"),
        )
        if throughput or any(t[field] is not None for t in targets.values())
    ]
    # Sorted, so a report re-rendered from its own (key-sorted) JSON comes out the same.
    extras = sorted({field for target in targets.values() for field in target["extra"]})
    headers = [
        "Target",
        "Rounds",
        f"Median {summary['unit']}".strip(),
        "Range (min-max)",
        *(header for _, header in fields),
        *(f"{field} (median, range)" for field in extras),
    ]
    rows = [
        [
            _label(name),
            str(target["rounds"]),
            _fmt(target["median"]),
            _range(target["min"], target["max"]),
            *(
                _fmt_ms(target[field]) if field.endswith("_ms") else _fmt(target[field])
                for field, _ in fields
            ),
            *(_extra_cell(target, field) for field in extras),
        ]
        for name, target in targets.items()
    ]
    return _md_table(headers, rows)


def _extra_cell(target: Mapping[str, Any], field: str) -> str:
    spread = target["extra"].get(field)
    if spread is None:
        return DASH
    if spread["min"] == spread["max"]:
        return _fmt(spread["median"])
    return f"{_fmt(spread['median'])} ({_range(spread['min'], spread['max'])})"


def _ratio_lines(summary: Mapping[str, Any]) -> list[str]:
    ratios: Mapping[str, Mapping[str, Any]] = summary["ratios"]
    if OURS not in summary["targets"]:
        return ["No ratios: ours was not measured in this scenario."]
    if not ratios:
        return ["No ratios: no baseline was measured in this scenario."]
    direction = (
        "lower is better, so below 1x favours ours"
        if summary["lower_is_better"]
        else "above 1x favours ours"
    )
    lines = [f"Ratios, median of the per-round ratios ({direction}):", ""]
    for baseline, ratio in ratios.items():
        if ratio["median"] is None:
            lines.append(f"- ours / {baseline}: no round in which both were measured")
            continue
        rounds = ratio["rounds"]
        spread = f"{_ratio(ratio['min'], '')}-{_ratio(ratio['max'], '')}, " if rounds > 1 else ""
        plural = "round" if rounds == 1 else "rounds"
        lines.append(f"- ours / {baseline} = {_ratio(ratio['median'])} ({spread}{rounds} {plural})")
    return lines


def _goal_lines(goals: Sequence[Mapping[str, Any]]) -> list[str]:
    if not goals:
        return []
    lines = ["Goals:", ""]
    for goal in goals:
        measured = ""
        if goal["value"] is not None:
            needed = (
                f", needs {goal['comparison']} {_plain(goal['threshold'])}"
                if goal["threshold"] is not None
                else ""
            )
            measured = f" (measured {_plain(goal['value'])}{needed})"
        line = f"- **{goal['status']}**: {goal['text']}{measured}"
        if goal["status"] != "MET":
            line += f". Why: {goal['why']}" if goal["why"] else ". No reason was recorded."
        lines.append(line)
    return [*lines, ""]


def _method_section(results: Mapping[str, Any]) -> list[str]:
    load = results.get("load_generator")
    tool = str(load.get("tool") or "wrk") if isinstance(load, Mapping) else "wrk"
    return [
        "## Method",
        "",
        "- **Same machine, same run.** Every target is measured on the machine above, in one run "
        f"of the suite, driven by the same load generator ({tool}) with the same threads, "
        "connections and duration. The load generator shares the machine with the server; its "
        "CPU share is given above.",
        "- **Pairwise rounds, A B A B.** The runner alternates ours and each baseline "
        "(ours, baseline, ours, baseline, ...), so slow drift of the machine (clock, thermal "
        "state, caches, neighbours) affects both sides of a round alike and cancels in the "
        "per-round ratio ours_r / baseline_r. A ratio reported here is the median of those "
        "per-round ratios over the rounds in which both were measured, with their range; it is "
        "not the ratio of the two medians.",
        "- **Figures per target.** Median over rounds, with the range (min-max) over rounds; "
        "p50 and p99 are the medians over rounds of each round's percentile; errors and non-2xx "
        "responses are totals over all rounds.",
        "- **Baselines at durable settings.** PostgreSQL: a row lock (`SELECT ... FOR UPDATE`) "
        "per reservation, `synchronous_commit = on`. SQLite: WAL journal with "
        "`synchronous = FULL`. Redis: a Lua script with no persistence (no AOF, no RDB), so it "
        "is **not durable**: an upper anchor, not a like-for-like competitor. The no-op "
        "endpoint is a trivial route on our own ingress: the ceiling of the HTTP path, so "
        "ours / noop is the share of the ingress's capacity the inventory work leaves.",
        "- **Goals.** Each goal is marked MET or NOT MET as measured; where a goal is not "
        "reached, the reason is given beside it.",
        "",
    ]


def _label(target: str) -> str:
    return TARGET_LABELS.get(target, target)


def _fmt(value: object) -> str:
    number = _num(value)
    if number is None:
        return DASH
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    magnitude = abs(number)
    if magnitude >= 100:
        return f"{number:,.0f}"
    if magnitude >= 10:
        return f"{number:.1f}"
    if magnitude >= 0.01:
        return f"{number:.2f}"
    return f"{number:.3g}"


def _fmt_ms(value: object) -> str:
    number = _num(value)
    if number is None:
        return DASH
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:.1f}"


def _plain(value: object) -> str:
    """A goal's figure as it would be written by hand: 0.8, 2, 0.61, 2,400."""
    number = _num(value)
    if number is None:
        return DASH
    return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3g}"


def _range(low: object, high: object) -> str:
    if _num(low) is None or _num(high) is None:
        return DASH
    return f"{_fmt(low)}-{_fmt(high)}"


def _ratio(value: object, suffix: str = "x") -> str:
    number = _num(value)
    if number is None:
        return DASH
    return (f"{number:.2f}" if number >= 0.01 else f"{number:.2g}") + suffix


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


# --- plots --------------------------------------------------------------------------------------


def _new_figure() -> Figure:
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg backend, without pyplot's global state
    return figure


def _colors(targets: Sequence[str]) -> dict[str, str]:
    others = iter(OTHER_COLORS * (1 + len(targets) // len(OTHER_COLORS)))
    return {t: TARGET_COLORS.get(t) or next(others) for t in targets}


def _figure_title(figure: Figure, results: Mapping[str, Any], what: str) -> None:
    title = f"{what}: {_report_date(results)} ({short_source(results)})"
    if _is_smoke(results):
        title = f"{SMOKE_BANNER.upper()}\n{title}"
    figure.suptitle(title, fontsize=16, color="#b00000" if _is_smoke(results) else "black")


def _empty(figure: Figure, message: str) -> None:
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=16, transform=axes.transAxes)


def _tick_label(summary: Mapping[str, Any], width: int) -> str:
    title = textwrap.shorten(summary["title"], width=width * 2, placeholder="...")
    return "\n".join([summary["id"], *textwrap.wrap(title, width=width)])


def _plot_throughput(
    results: Mapping[str, Any], summaries: Mapping[str, Mapping[str, Any]], path: Path
) -> None:
    figure = _new_figure()
    _figure_title(figure, results, "Throughput per scenario")
    scenarios = [s for s in summaries.values() if s["kind"] == "throughput"]
    # Per scenario, the targets measured, ours first: its bars, side by side, centred on the tick.
    groups = [
        [t for t, figures in s["targets"].items() if figures["median"] is not None]
        for s in scenarios
    ]
    targets = _ordered(t for group in groups for t in group)
    if not targets:
        _empty(figure, "No throughput scenario was measured in this run.")
        figure.savefig(path, dpi=DPI)
        return
    axes = figure.add_subplot()
    colors = _colors(targets)
    width = 0.8 / max(len(group) for group in groups)
    handles: dict[str, Artist] = {}
    tops: list[float] = []
    label_lines = 0
    for position, (scenario, group) in enumerate(zip(scenarios, groups, strict=True)):
        if not group:
            continue
        left = position - width * len(group) / 2
        for slot, target in enumerate(group):
            figures = scenario["targets"][target]
            median, low, high = figures["median"], figures["min"], figures["max"]
            bars = axes.bar(
                left + width * (slot + 0.5),
                median,
                width * 0.92,
                yerr=[[median - low], [high - median]],
                capsize=4,
                color=colors[target],
                edgecolor="white",
                error_kw={"elinewidth": 1.2, "ecolor": "#333333"},
            )
            handles.setdefault(target, bars.patches[0])
            tops.append(high)
        ratios = [
            f"{_ratio(r['median'])} vs {_label(b)}"
            for b, r in scenario["ratios"].items()
            if r["median"] is not None
        ]
        if group[0] == OURS and ratios:
            # Above the group (ours is its first bar), centred, so neighbouring boxes do not meet.
            label_lines = max(label_lines, len(ratios))
            axes.annotate(
                "ours:\n" + "\n".join(ratios),
                xy=(position, max(scenario["targets"][t]["max"] for t in group)),
                xytext=(0, 8),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=10,
                bbox={"boxstyle": "round,pad=0.3", "facecolor": "white", "edgecolor": "#1f77b4"},
            )
    bottoms = [
        s["targets"][t]["min"] for s, group in zip(scenarios, groups, strict=True) for t in group
    ]
    positive = [value for value in bottoms + tops if value > 0]
    log = bool(positive) and max(positive) / min(positive) > 100
    # Room above the tallest bar, as a share of the axis height, for the ratio labels.
    headroom = 0.06 + 0.035 * (label_lines + 1 if label_lines else 0)
    top = max(tops)
    if log:
        axes.set_yscale("log")
        low = min(positive) / 1.5
        decades = math.log10(top / low)
        axes.set_ylim(low, top * 10 ** (decades * headroom / (1 - headroom)))
    else:
        axes.set_ylim(0, top / (1 - headroom))
    axes.set_xlim(-0.5, len(scenarios) - 0.5)
    wrap = max(10, min(30, 140 // len(scenarios)))
    font = 11 if len(scenarios) <= 5 else 10
    axes.set_xticks(range(len(scenarios)), [_tick_label(s, wrap) for s in scenarios], fontsize=font)
    units = {s["unit"] for s in scenarios}
    unit = units.pop() if len(units) == 1 else "throughput"
    axes.set_ylabel(f"{unit}, median over rounds" + (" (log scale)" if log else ""), fontsize=12)
    axes.set_title(
        "Bars: median over rounds; whiskers: min-max over rounds. "
        "Labels: ours / baseline, median of the per-round ratios.",
        fontsize=11,
    )
    axes.grid(axis="y", which="major", alpha=0.35)
    axes.set_axisbelow(True)
    axes.tick_params(axis="y", labelsize=11)
    axes.yaxis.set_major_formatter(FuncFormatter(_plain_tick))
    figure.legend(
        [handles[t] for t in targets],
        [_label(t) for t in targets],
        loc="outside right upper",
        fontsize=12,
        title="Target",
        title_fontsize=12,
    )
    figure.savefig(path, dpi=DPI)


def _plain_tick(value: float, _position: int | None = None) -> str:
    """Tick labels as plain numbers (2,000 rather than 2x10^3)."""
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}"


def _log_minor_ticks(axes: Axes) -> FuncFormatter:
    """Minor tick labels on a log axis spanning less than about a decade and a half, where
    the decades alone would leave too few labels to read a value off."""

    def label(value: float, _position: int | None = None) -> str:
        low, high = axes.get_ylim()
        if low <= 0 or math.log10(high / low) > 1.5:
            return ""
        leading = round(value / 10 ** math.floor(math.log10(value)), 6)
        return _plain_tick(value) if leading in {2.0, 3.0, 5.0} else ""

    return FuncFormatter(label)


def _latencies(figures: Mapping[str, Any]) -> dict[str, float]:
    """The target's latency percentiles; p50 and p99 alone if the runner gave no table."""
    table: dict[str, float] = dict(figures["latency_ms"])
    if not table:
        for key, field in (("50", "p50_ms"), ("99", "p99_ms")):
            if figures[field] is not None:
                table[key] = figures[field]
    return table


def _plot_latency(
    results: Mapping[str, Any], summaries: Mapping[str, Mapping[str, Any]], path: Path
) -> None:
    figure = _new_figure()
    _figure_title(figure, results, "Latency distribution (median over rounds)")
    scenarios = [
        s
        for s in summaries.values()
        if s["kind"] == "throughput" and any(_latencies(f) for f in s["targets"].values())
    ]
    if not scenarios:
        _empty(figure, "No latency was measured in this run.")
        figure.savefig(path, dpi=DPI)
        return
    colors = _colors(_all_targets({s["id"]: s for s in scenarios}))
    columns = 1 if len(scenarios) == 1 else 2 if len(scenarios) <= 4 else 3
    rows = math.ceil(len(scenarios) / columns)
    grid = figure.subplots(rows, columns, squeeze=False)
    handles: dict[str, Artist] = {}
    for index, scenario in enumerate(scenarios):
        axes: Axes = grid[index // columns][index % columns]
        tables = {t: _latencies(f) for t, f in scenario["targets"].items()}
        keys = sorted({k for table in tables.values() for k in table}, key=_percentile_order)
        for target, table in tables.items():
            if not table:
                continue
            ys = [table.get(key, math.nan) for key in keys]
            (line,) = axes.plot(
                range(len(keys)),
                ys,
                marker="o",
                linewidth=2,
                color=colors[target],
                label=_label(target),
            )
            handles.setdefault(_label(target), line)
        axes.set_xticks(range(len(keys)), [f"p{key}" for key in keys])
        if any(value > 0 for table in tables.values() for value in table.values()):
            axes.set_yscale("log")
            axes.yaxis.set_major_formatter(FuncFormatter(_plain_tick))
            axes.yaxis.set_minor_formatter(_log_minor_ticks(axes))
        axes.set_ylabel("ms (log scale)")
        axes.set_xlabel("percentile")
        title = f"{scenario['id']}: {scenario['title']}"
        title = textwrap.shorten(title, 110 // columns + 15, placeholder="...")
        axes.set_title(title, fontsize=11)
        axes.grid(which="both", alpha=0.3)
    for index in range(len(scenarios), rows * columns):
        grid[index // columns][index % columns].set_axis_off()
    ordered = [_label(t) for t in colors if _label(t) in handles]
    figure.legend(
        [handles[label] for label in ordered],
        ordered,
        loc="outside right upper",
        fontsize=12,
        title="Target",
        title_fontsize=12,
    )
    figure.savefig(path, dpi=DPI)


# --- command line -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report",
        description="Re-render the benchmark report (markdown, JSON, plots) from a results JSON.",
    )
    parser.add_argument("results", type=Path, metavar="RESULTS.json")
    parser.add_argument(
        "--out", type=Path, default=Path("bench/results"), help="default: bench/results"
    )
    args = parser.parse_args(argv)
    try:
        results = json.loads(args.results.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        parser.error(f"cannot read {args.results}: {error}")
    if not isinstance(results, dict):
        parser.error(f"{args.results} does not hold a JSON object")
    for path in write_report(results, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
