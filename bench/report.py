"""The benchmark suite's report: a markdown page, a diffable JSON and two plots per run.
Re-renders a saved results JSON (the suite's, or a report's own: its summary is recomputed):

    python -m bench.report RESULTS.json [--out bench/results]
"""

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report_figures import report_date, summarize
from bench.report_markdown import render_markdown
from bench.report_plots import plot_latency, plot_throughput


def write_report(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write out_dir/<date>.md, out_dir/<date>.json and PNG plots out_dir/<date>-throughput.png,
    out_dir/<date>-latency.png; return the paths written."""
    data: dict[str, Any] = _json_safe({k: v for k, v in results.items() if k != "summary"})
    summaries = summarize(data)
    date = report_date(data)
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
    plot_throughput(data, summaries, throughput_path)
    plot_latency(data, summaries, latency_path)
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
