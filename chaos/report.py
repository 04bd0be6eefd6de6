"""The report of a chaos run: `report.json` (every figure) and `report.md` (for people)."""

import json
from pathlib import Path
from typing import Any


def write_report(summary: dict[str, Any], out: Path) -> None:
    (out / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "report.md").write_text(markdown(summary))


def markdown(summary: dict[str, Any]) -> str:
    verdict = "PASS" if summary["violations"] == 0 else "FAIL"
    lines = [
        f"# Chaos run: {verdict}",
        "",
        f"Seed {summary['seed']}"
        + (f", broken build `{summary['broken_build']}`" if summary["broken_build"] else "")
        + f"; load {summary['load_seconds']} s, settling {summary['settle_seconds']} s.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| operations | {summary['operations']:,} |",
        f"| faults injected | {summary['faults']} ({summary['faults_not_injected']} not) |",
        f"| unknown outcomes | {summary['unknown_outcomes']:,} |",
        f"| resolved as | {_pairs(summary['unknown_resolved_as'])} |",
        f"| slowest recovery | {summary['recovery_seconds_max']} s |",
        f"| change-feed events checked | {summary['feed_events']:,} |",
        f"| restock jobs (runs of a file after the load) | {summary.get('restock_jobs', 0)} "
        f"({summary.get('restock_runs_after_load', 0)}) |",
        f"| violations | {summary['violations']} |",
        "",
        "## Faults by kind",
        "",
        "| kind | count |",
        "|---|---|",
        *(f"| {kind} | {count} |" for kind, count in sorted(summary["faults_by_kind"].items())),
        "",
        "## Operations by kind and outcome",
        "",
        "| kind | ok | fail | unknown |",
        "|---|---|---|---|",
        *(
            f"| {kind} | {c.get('ok', 0):,} | {c.get('fail', 0):,} | {c.get('unknown', 0):,} |"
            for kind, c in summary["operations_by_kind"].items()
        ),
        "",
        "## What was checked",
        "",
        *(f"- {what}: {count:,}" for what, count in sorted(summary["checked"].items())),
        "",
    ]
    if summary["violations"]:
        lines += ["## Violations", ""]
        for check, details in summary["violation_details"].items():
            lines.append(f"### {check} ({summary['violations_by_check'][check]})")
            lines += [f"- {detail}" for detail in details]
            lines.append("")
    return "\n".join(lines)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items())) or "-"
