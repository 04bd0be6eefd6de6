"""The benchmark report: files written, pairwise ratios, goals, JSON round trip, robustness."""

import copy
import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest

from bench.report import main, write_report
from bench.report_figures import summarize

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def http_run(target: str, number: int, throughput: float, p50: float, p99: float) -> dict[str, Any]:
    return {
        "target": target,
        "round": number,
        "throughput": throughput,
        "p50_ms": p50,
        "p99_ms": p99,
        "errors": 0,
        "non_2xx": 0,
        "latency_ms": {"50": p50, "75": p50 * 1.2, "90": p50 * 1.5, "99": p99, "99.9": p99 * 1.8},
    }


def example_results() -> dict[str, Any]:
    """The runner's output for a small run. In S1, ours and postgres drift in opposite directions
    from round to round, so the median of the per-round ratios (2.0) differs from the ratio of
    the medians (2450 / 1500); round 4 of ours has no postgres partner."""
    s1_runs = [
        http_run("ours", 1, 1000.0, 20.0, 45.0),
        http_run("postgres", 1, 500.0, 40.0, 90.0),
        http_run("ours", 2, 2000.0, 18.0, 40.0),
        http_run("postgres", 2, 4000.0, 8.0, 20.0),
        http_run("ours", 3, 3000.0, 15.0, 35.0),
        http_run("postgres", 3, 1500.0, 30.0, 70.0),
        http_run("ours", 4, 2900.0, 16.0, 36.0),
        http_run("noop", 1, 3900.0, 9.0, 25.0),
        http_run("noop", 2, 4100.0, 9.5, 26.0),
        http_run("sqlite", 1, 1200.0, 30.0, 120.0),
        http_run("redis", 1, 9000.0, 4.0, 9.0),
    ]
    return {
        "date": "2026-11-29",
        "started_at": "2026-11-29T06:00:00Z",
        "source": "abc1234",
        "machine": {"cpus": 2, "memory_gib": 24.0, "python": "3.11.2", "ray": "2.60.0"},
        "mode": "full",
        "load_generator": {
            "tool": "wrk 4.1.0",
            "threads": 2,
            "connections": 64,
            "seconds": 15,
            "cpu_share": 0.09,
        },
        "scenarios": [
            {
                "id": "S1",
                "title": "Single-op durable reservations, 10,000 SKUs, 64 connections",
                "unit": "req/s",
                "runs": s1_runs,
                "goals": [
                    {
                        "text": "S1 >= 0.8x the no-op endpoint",
                        "value": 0.37,
                        "threshold": 0.8,
                        "comparison": ">=",
                        "met": False,
                        "why": "the WAL fsync per coalesced batch bounds the shard at 2,400 req/s",
                    },
                    {
                        "text": "S1 >= 1.2x PostgreSQL row lock",
                        "value": 2.0,
                        "threshold": 1.2,
                        "comparison": ">=",
                        "met": True,
                        "why": "",
                    },
                ],
                "notes": ["64 connections, one line of one unit per request"],
            },
            {
                "id": "S2",
                "title": "Hot SKU: every request on one SKU",
                "unit": "req/s",
                "runs": [
                    http_run("ours", 1, 300.0, 200.0, 450.0),
                    http_run("redis", 1, 45000.0, 1.2, 3.0),
                    http_run("ours", 2, 320.0, 190.0, 430.0),
                    http_run("redis", 2, 47000.0, 1.1, 2.9),
                ],
                "goals": [],
                "notes": [],
            },
            {
                "id": "S5",
                "title": "1,000,000-row Parquet restock",
                "unit": "s",
                "lower_is_better": True,
                "runs": [
                    {"target": "ours", "round": 1, "value": 2.6},
                    {"target": "sqlite", "round": 1, "value": 5.2},
                ],
                "goals": [
                    {
                        "text": "S5 <= 5 s",
                        "value": 2.6,
                        "threshold": 5.0,
                        "comparison": "<=",
                        "met": True,
                        "why": "",
                    }
                ],
            },
            {
                "id": "S7",
                "title": "Spike to 10x the sustainable rate",
                "unit": "req/s",
                "runs": [
                    {
                        **http_run("ours", 1, 2500.0, 25.0, 60.0),
                        "accepted_rps": 2400.0,
                        "rejected": 51000,
                        "rejected_p99_ms": 3.5,
                        "lost": 0,
                    },
                    {
                        **http_run("ours", 2, 2600.0, 24.0, 58.0),
                        "accepted_rps": 2500.0,
                        "rejected": 50000,
                        "rejected_p99_ms": 3.1,
                        "lost": 0,
                    },
                ],
                "goals": [
                    {
                        "text": "S7 rejected p99 <= 2 ms",
                        "value": 3.3,
                        "threshold": 2.0,
                        "comparison": "<=",
                        "met": False,
                        "why": "rejections pass through the proxy's JSON error path",
                    }
                ],
                "notes": ["wrk2 at a constant 25,000 req/s"],
            },
            {
                "id": "S9",
                "title": "Cross-region replication",
                "unit": "req/s",
                "runs": [],
                "goals": [],
                "notes": ["needs two machines; this run had one"],
            },
        ],
    }


@pytest.fixture
def written(tmp_path: Path) -> tuple[dict[str, Any], list[Path]]:
    results = example_results()
    return results, write_report(results, tmp_path / "results")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


def test_writes_markdown_json_and_two_pngs(
    written: tuple[dict[str, Any], list[Path]], tmp_path: Path
) -> None:
    _, paths = written
    out = tmp_path / "results"
    assert paths == [
        out / "2026-11-29.md",
        out / "2026-11-29.json",
        out / "2026-11-29-throughput.png",
        out / "2026-11-29-latency.png",
    ]
    for path in paths:
        assert path.is_file()
    for png in paths[2:]:
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        assert 20_000 < png.stat().st_size < 5_000_000
        assert png_size(png) == (1600, 900)
    markdown = paths[0].read_text()
    assert "(2026-11-29-throughput.png)" in markdown
    assert "(2026-11-29-latency.png)" in markdown
    assert str(tmp_path) not in markdown  # links are relative


def test_markdown_names_every_scenario_and_the_method(
    written: tuple[dict[str, Any], list[Path]],
) -> None:
    results, paths = written
    markdown = paths[0].read_text()
    for scenario in results["scenarios"]:
        assert f"## {scenario['id']}" in markdown
    assert "2026-11-29" in markdown.splitlines()[0]
    assert "abc1234" in markdown.splitlines()[0]
    assert "wrk 4.1.0" in markdown
    assert "9% of its CPU" in markdown
    assert "A B A B" in markdown
    assert "synchronous_commit = on" in markdown
    assert "synchronous = FULL" in markdown
    assert "not durable" in markdown
    assert "**Not run:** needs two machines; this run had one" in markdown
    assert "smoke run" not in markdown.lower()
    # S7's own fields get columns of their own.
    for field in ("accepted_rps", "rejected", "rejected_p99_ms", "lost"):
        assert f"{field} (median, range)" in markdown


def test_ratio_is_the_median_of_per_round_ratios(
    written: tuple[dict[str, Any], list[Path]],
) -> None:
    results, paths = written
    summary = summarize(results)["S1"]
    ratio = summary["ratios"]["postgres"]
    # Rounds 1-3: 1000/500, 2000/4000, 3000/1500; round 4 has no postgres run.
    assert ratio["per_round"] == {"1": 2.0, "2": 0.5, "3": 2.0}
    assert ratio["median"] == 2.0
    assert (ratio["min"], ratio["max"], ratio["rounds"]) == (0.5, 2.0, 3)
    ratio_of_medians = (
        summary["targets"]["ours"]["median"] / summary["targets"]["postgres"]["median"]
    )
    assert not math.isclose(ratio_of_medians, 2.0)
    markdown = paths[0].read_text()
    assert "ours / postgres = 2.00x (0.50-2.00, 3 rounds)" in markdown
    assert f"{ratio_of_medians:.2f}x" not in markdown
    assert "ours / sqlite = 0.83x (1 round)" in markdown  # 1000 / 1200, round 1 only
    # Single-figure scenarios compare the same way; lower is better there.
    assert summarize(results)["S5"]["ratios"]["sqlite"]["median"] == 0.5


def test_goals_not_met_are_said_plainly_with_why(
    written: tuple[dict[str, Any], list[Path]],
) -> None:
    _, paths = written
    markdown = paths[0].read_text()
    assert (
        "**NOT MET**: S1 >= 0.8x the no-op endpoint (measured 0.37, needs >= 0.8). "
        "Why: the WAL fsync per coalesced batch bounds the shard at 2,400 req/s"
    ) in markdown
    assert "**MET**: S1 >= 1.2x PostgreSQL row lock" in markdown
    assert "Why: rejections pass through the proxy's JSON error path" in markdown
    assert "**2 of 4 goals met. Not met:**" in markdown
    summary_row = next(line for line in markdown.splitlines() if line.startswith("| S1 "))
    assert "1/2 met; NOT MET: S1 >= 0.8x the no-op endpoint" in summary_row


def test_json_round_trips_with_a_sorted_summary(
    written: tuple[dict[str, Any], list[Path]],
) -> None:
    results, paths = written
    text = paths[1].read_text()

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} in the JSON")

    loaded = json.loads(text, parse_constant=no_constants)
    assert {k: v for k, v in loaded.items() if k != "summary"} == results
    assert text == json.dumps(loaded, indent=2, sort_keys=True) + "\n"
    summary = loaded["summary"]
    assert list(summary) == ["S1", "S2", "S5", "S7", "S9"]
    assert summary["S1"]["targets"]["ours"]["median"] == 2450.0
    assert summary["S1"]["targets"]["noop"]["min"] == 3900.0
    assert summary["S1"]["ratios"]["postgres"]["median"] == 2.0
    assert summary["S1"]["goals"][0]["status"] == "NOT MET"
    assert summary["S9"]["kind"] == "not run"
    assert summary["S7"]["targets"]["ours"]["extra"]["rejected"]["median"] == 50500.0


def test_smoke_run_and_nan_figures(tmp_path: Path) -> None:
    results = example_results()
    results["mode"] = "smoke"
    results["scenarios"][0]["runs"][0]["p99_ms"] = math.nan
    results["scenarios"][0]["runs"][1]["throughput"] = math.inf
    before = copy.deepcopy(results)
    paths = write_report(results, tmp_path)
    assert results["scenarios"][1] == before["scenarios"][1]  # the input is left alone
    markdown = paths[0].read_text()
    assert "Smoke run: figures are not meaningful" in markdown
    loaded = json.loads(paths[1].read_text())
    assert loaded["scenarios"][0]["runs"][0]["p99_ms"] is None
    # Postgres round 1 has no finite figure, so only rounds 2 and 3 pair up.
    assert loaded["summary"]["S1"]["ratios"]["postgres"]["rounds"] == 2


def test_missing_targets_and_empty_runs(tmp_path: Path) -> None:
    results = example_results()
    results["scenarios"] = [
        {"id": "S3", "title": "baselines only", "runs": [http_run("postgres", 1, 800, 5, 9)]},
        {"id": "S4", "title": "nothing", "runs": []},
    ]
    del results["load_generator"]
    paths = write_report(results, tmp_path)
    markdown = paths[0].read_text()
    assert "No ratios: ours was not measured in this scenario." in markdown
    assert "**Not run:** no runs recorded" in markdown
    assert "**Load generator:** not recorded." in markdown
    for png in paths[2:]:
        assert png_size(png) == (1600, 900)

    results["scenarios"] = []
    paths = write_report(results, tmp_path / "empty")
    assert "No scenarios in this run." in paths[0].read_text()
    assert all(path.is_file() for path in paths)


def test_command_line_re_renders_a_saved_report(
    written: tuple[dict[str, Any], list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, paths = written
    out = tmp_path / "again"
    assert main([str(paths[1]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [
        str(out / name)
        for name in (
            "2026-11-29.md",
            "2026-11-29.json",
            "2026-11-29-throughput.png",
            "2026-11-29-latency.png",
        )
    ]
    assert (out / "2026-11-29.md").read_text() == paths[0].read_text()
    assert (out / "2026-11-29.json").read_text() == paths[1].read_text()
