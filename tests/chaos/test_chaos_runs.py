"""Chaos runs, each in its own process with its own multi-node Ray cluster: a short run of every
fault kind must end with no violation, and two deliberately broken builds must be caught.

`make chaos` runs the long version (see docs/chaos.md)."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chaos.faults import KINDS

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_SECONDS = 900


def chaos_run(out: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    """(exit code, report, output) of `python -m chaos.run`."""
    command = [sys.executable, "-m", "chaos.run", "--out", str(out), *args]
    done = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    output = (done.stdout + done.stderr)[-5_000:]
    report_file = out / "report.json"
    assert report_file.exists(), output
    return done.returncode, json.loads(report_file.read_text()), output


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS)
def test_a_short_run_with_every_fault_kind_finds_no_violation(tmp_path: Path) -> None:
    code, report, output = chaos_run(
        tmp_path, "--seconds", "120", "--seed", "11", "--fault-gap", "1", "3"
    )
    assert report["violations_by_check"] == {}, report["violation_details"]
    assert code == 0, output
    injected = dict(report["faults_by_kind"])
    assert report["faults_not_injected"] <= 2, report
    assert all(injected.get(kind, 0) >= 2 for kind in KINDS), injected
    # Real work between the faults (about 2,000 operations on an idle 2-core machine; fewer
    # when other work shares its cores).
    assert report["operations"] >= 500, report
    # Faults made some outcomes unknown, and every one was resolved.
    assert report["unknown_outcomes"] > 0, report
    assert sum(report["unknown_resolved_as"].values()) == report["unknown_outcomes"]
    assert report["checked"]["shard files"] == 4


BROKEN = [
    # Retries apply twice: a replay answers differently and units appear from nowhere.
    ("skip-idempotency", {"replay", "conservation"}),
    # A kill loses changes already acknowledged.
    ("ack-before-commit", {"lost", "reserved", "conservation", "version", "feed"}),
]


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS)
@pytest.mark.parametrize(("broken", "caught_by"), BROKEN)
def test_the_checker_catches_a_broken_build(
    tmp_path: Path, broken: str, caught_by: set[str]
) -> None:
    code, report, output = chaos_run(
        tmp_path,
        "--break",
        broken,
        "--seconds",
        "20",
        "--seed",
        "5",
        "--faults",
        "shard-kill",
        "--fault-gap",
        "1",
        "3",
        "--shard-hosts",
        "1",
        "--clients",
        "8",
        "--settle-timeout",
        "180",
    )
    assert code == 1, output
    found = set(report["violations_by_check"])
    assert found & caught_by, report["violation_details"]
    assert report["broken_build"] == broken
