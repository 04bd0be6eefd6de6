"""The benchmark report's two plots: throughput per scenario (bars over rounds, ratio labels)
and the latency distribution per scenario; PNGs drawn with matplotlib's Agg backend."""

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bench.report_figures import (
    OURS,
    SMOKE_BANNER,
    all_targets,
    is_smoke,
    ordered_targets,
    percentile_order,
    ratio_text,
    report_date,
    short_source,
    target_label,
)

TARGET_COLORS = {
    "ours": "#1f77b4",
    "noop": "#7f7f7f",
    "postgres": "#2ca02c",
    "sqlite": "#ff7f0e",
    "redis": "#d62728",
}
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
FIGURE_SIZE = (16.0, 9.0)  # inches; at DPI, 1600x900 pixels
DPI = 100


def _new_figure() -> Figure:
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # the Agg backend, without pyplot's global state
    return figure


def _colors(targets: Sequence[str]) -> dict[str, str]:
    others = iter(OTHER_COLORS * (1 + len(targets) // len(OTHER_COLORS)))
    return {t: TARGET_COLORS.get(t) or next(others) for t in targets}


def _figure_title(figure: Figure, results: Mapping[str, Any], what: str) -> None:
    title = f"{what}: {report_date(results)} ({short_source(results)})"
    if is_smoke(results):
        title = f"{SMOKE_BANNER.upper()}\n{title}"
    figure.suptitle(title, fontsize=16, color="#b00000" if is_smoke(results) else "black")


def _empty(figure: Figure, message: str) -> None:
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=16, transform=axes.transAxes)


def _tick_label(summary: Mapping[str, Any], width: int) -> str:
    title = textwrap.shorten(summary["title"], width=width * 2, placeholder="...")
    return "\n".join([summary["id"], *textwrap.wrap(title, width=width)])


def plot_throughput(
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
    targets = ordered_targets(t for group in groups for t in group)
    if not targets:
        _empty(figure, "No throughput scenario was measured in this run.")
        figure.savefig(path, dpi=DPI)
        return
    axes = figure.add_subplot()
    handles, tops, label_lines = _draw_groups(axes, scenarios, groups, _colors(targets))
    bottoms = [
        s["targets"][t]["min"] for s, group in zip(scenarios, groups, strict=True) for t in group
    ]
    log = _throughput_scale(axes, bottoms, tops, label_lines)
    _throughput_axes(axes, scenarios, log)
    figure.legend(
        [handles[t] for t in targets],
        [target_label(t) for t in targets],
        loc="outside right upper",
        fontsize=12,
        title="Target",
        title_fontsize=12,
    )
    figure.savefig(path, dpi=DPI)


def _draw_groups(
    axes: Axes,
    scenarios: Sequence[Mapping[str, Any]],
    groups: Sequence[Sequence[str]],
    colors: Mapping[str, str],
) -> tuple[dict[str, Artist], list[float], int]:
    """Each scenario's bars (median, min-max whiskers) side by side around its tick, with ours'
    ratios above them; the legend's handles, the bars' tops and the most lines a label has."""
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
        label_lines = max(label_lines, _ratio_label(axes, position, scenario, group))
    return handles, tops, label_lines


def _ratio_label(
    axes: Axes, position: int, scenario: Mapping[str, Any], group: Sequence[str]
) -> int:
    """Ours' ratios to the baselines in a box above the group; its lines (0 if none drawn)."""
    ratios = [
        f"{ratio_text(r['median'])} vs {target_label(b)}"
        for b, r in scenario["ratios"].items()
        if r["median"] is not None
    ]
    if group[0] != OURS or not ratios:
        return 0
    # Above the group (ours is its first bar), centred, so neighbouring boxes do not meet.
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
    return len(ratios)


def _throughput_scale(
    axes: Axes, bottoms: Sequence[float], tops: Sequence[float], label_lines: int
) -> bool:
    """A log scale where the bars span more than two decades, else linear, with room above the
    tallest bar for the ratio labels; whether it is log."""
    positive = [value for value in [*bottoms, *tops] if value > 0]
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
    return log


def _throughput_axes(axes: Axes, scenarios: Sequence[Mapping[str, Any]], log: bool) -> None:
    """Ticks named after the scenarios, the unit, what bars and labels mean, the grid."""
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


def plot_latency(
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
    colors = _colors(all_targets({s["id"]: s for s in scenarios}))
    columns = 1 if len(scenarios) == 1 else 2 if len(scenarios) <= 4 else 3
    rows = math.ceil(len(scenarios) / columns)
    grid = figure.subplots(rows, columns, squeeze=False)
    handles: dict[str, Artist] = {}
    for index, scenario in enumerate(scenarios):
        axes: Axes = grid[index // columns][index % columns]
        tables = {t: _latencies(f) for t, f in scenario["targets"].items()}
        keys = sorted({k for table in tables.values() for k in table}, key=percentile_order)
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
                label=target_label(target),
            )
            handles.setdefault(target_label(target), line)
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
    ordered = [target_label(t) for t in colors if target_label(t) in handles]
    figure.legend(
        [handles[label] for label in ordered],
        ordered,
        loc="outside right upper",
        fontsize=12,
        title="Target",
        title_fontsize=12,
    )
    figure.savefig(path, dpi=DPI)
