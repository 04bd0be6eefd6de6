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
        f"| retries with the key (at once, after the load) | {_pairs(summary['retries'])} |",
        f"| slowest recovery | {summary['recovery_seconds_max']} s |",
        f"| change-feed events checked | {summary['feed_events']:,} |",
        f"| restock jobs (runs of a file after the load) | {summary.get('restock_jobs', 0)} "
        f"({summary.get('restock_runs_after_load', 0)}) |",
        *(
            [f"| restock files to refuse (exit code) | {_pairs(summary['restock_refusals'])} |"]
            if summary.get("restock_refusals")
            else []
        ),
        *(
            [f"| shards whose feed was pruned | {summary['feed_pruned_shards']} |"]
            if "feed_pruned_shards" in summary
            else []
        ),
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
        "First attempt, then after every retry with the key.",
        "",
        "| kind | ok | fail | unknown | ok in the end | fail in the end | unknown in the end |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {kind} | {c.get('ok', 0):,} | {c.get('fail', 0):,} | {c.get('unknown', 0):,} | "
            f"{e.get('ok', 0):,} | {e.get('fail', 0):,} | {e.get('unknown', 0):,} |"
            for kind, c in summary["operations_by_kind"].items()
            for e in [summary["final_outcomes_by_kind"].get(kind, {})]
        ),
        "",
        "## What was checked",
        "",
        *(f"- {what}: {count:,}" for what, count in sorted(summary["checked"].items())),
        "",
    ]
    if "replication" in summary:
        lines += replication_lines(summary["replication"])
    if summary["violations"]:
        lines += ["## Violations", ""]
        for check, details in summary["violation_details"].items():
            lines.append(f"### {check} ({summary['violations_by_check'][check]})")
            lines += [f"- {detail}" for detail in details]
            lines.append("")
    return "\n".join(lines)


def replication_lines(figures: dict[str, Any]) -> list[str]:
    """The replicated mode's figures: failover, untouched shards, back to full replica sets."""
    lines = [
        "## Replica sets",
        "",
        "Failover: from the fault to the first acknowledged write on a shard whose primary it "
        "hit. Untouched: failed writes on shards with no replica where the fault struck, from "
        "the fault until every replica set was whole again (back to full).",
        "",
        "| kind | faults | failover p50 / p99 / max (s) | unmeasured | untouched failed writes "
        "| back to full max (s) |",
        "|---|---|---|---|---|---|",
    ]
    for kind, found in sorted(figures["by_kind"].items()):
        spread = found["failover_seconds"]
        lines.append(
            f"| {kind} | {found['faults']} | {spread['p50']} / {spread['p99']} / {spread['max']} "
            f"| {found['failover_unmeasured']} | {found['untouched_failed_writes']} "
            f"| {found['back_to_full_seconds_max']} |"
        )
    lines += [
        "",
        f"Probe attempts {figures['probe_writes']:,}; writes sent to frozen primaries "
        f"{figures['zombie_writes']}, acknowledged {figures['zombie_acknowledged']}.",
        "",
    ]
    return lines


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count:,}" for name, count in sorted(counts.items())) or "-"
