"""The benchmark report's markdown page: the summary table and goals, the plots, a section per
scenario (targets, ratios, goals, notes) and the method."""

from collections.abc import Mapping, Sequence
from typing import Any

from bench.report_figures import (
    DASH,
    OURS,
    SMOKE_BANNER,
    all_targets,
    finite_number,
    is_smoke,
    ratio_text,
    report_date,
    short_source,
    target_label,
)


def render_markdown(
    results: Mapping[str, Any],
    summaries: Mapping[str, Mapping[str, Any]],
    plots: Mapping[str, str],
    json_name: str,
) -> str:
    date = report_date(results)
    source = short_source(results)
    lines = [f"# Inventory service benchmarks, {date} (`{source}`)", ""]
    if is_smoke(results):
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
    if (memory := finite_number(machine.get("memory_gib"))) is not None:
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
    share = finite_number(load.get("cpu_share"))
    if share is not None:
        percent = share * 100 if share <= 1 else share
        line += (
            f"; the load generator shares the machine and took {percent:.0f}% of its CPU "
            f"(cpu_share {share:g})"
        )
    else:
        line += "; the load generator's CPU share was not recorded"
    return line + "."


def _summary_table(summaries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not summaries:
        return ["No scenarios in this run."]
    targets = all_targets(summaries) or [OURS]
    headers = ["Scenario", "Unit", *(target_label(t) for t in targets), "Ratios (ours / baseline)"]
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
                    f"{ratio_text(r['median'])} vs {b}"
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
            target_label(name),
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
        spread = (
            f"{ratio_text(ratio['min'], '')}-{ratio_text(ratio['max'], '')}, " if rounds > 1 else ""
        )
        plural = "round" if rounds == 1 else "rounds"
        lines.append(
            f"- ours / {baseline} = {ratio_text(ratio['median'])} ({spread}{rounds} {plural})"
        )
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


def _fmt(value: object) -> str:
    number = finite_number(value)
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
    number = finite_number(value)
    if number is None:
        return DASH
    return f"{number:,.0f}" if abs(number) >= 100 else f"{number:.1f}"


def _plain(value: object) -> str:
    """A goal's figure as it would be written by hand: 0.8, 2, 0.61, 2,400."""
    number = finite_number(value)
    if number is None:
        return DASH
    return f"{number:,.0f}" if abs(number) >= 1000 else f"{number:.3g}"


def _range(low: object, high: object) -> str:
    if finite_number(low) is None or finite_number(high) is None:
        return DASH
    return f"{_fmt(low)}-{_fmt(high)}"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines
