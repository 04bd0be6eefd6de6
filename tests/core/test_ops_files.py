"""The operator files name only metrics the service exports: every PromQL expression of the
Grafana dashboard and of the Prometheus rules uses series from `metric_names`, the dashboard
shows every metric, the rules have their labels, annotations and runbooks, and
docs/operations.md lists every metric. No Ray; `promtool` checks the rules when it is on PATH."""

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from inventory_actors.observability.metric_names import (
    ALL_METRICS,
    API_METRICS,
    SHARD_METRICS,
    MetricSpec,
    exported_series,
)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "inventory-dashboard.json"
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
OPERATIONS = ROOT / "docs" / "operations.md"

# Anything that looks like one of the service's series; a label value spelled like one counts
# too, which only makes the check stricter.
METRIC_NAME = re.compile(r"(?<![A-Za-z0-9_:])ray_inventory_[A-Za-z0-9_:]*")
# An aggregation over Ray's per-worker labels (`sum by (shard) (`, `max(`, ...).
AGGREGATION = re.compile(r"\b(sum|max|min|avg|count)\s*(\b(by|without)\s*\([^)]*\)\s*)?\(")
KNOWN_SERIES = frozenset(series for spec in ALL_METRICS for series in exported_series(spec))

# Metrics the dashboard may leave out, each with the reason. Empty: it shows all of them.
DASHBOARD_EXEMPT: dict[str, str] = {}

# alert -> its severity
ALERTS = {
    "InventoryShardDown": "critical",
    "InventoryShardUpAbsent": "critical",
    "InventoryCommitLatencyHigh": "warning",
    "InventoryHttp5xxRateHigh": "critical",
    "InventoryBackpressure": "warning",
    "InventoryRateLimited": "info",
    "InventoryLowStock": "warning",
    "InventoryStorageFailures": "critical",
}
SEVERITIES = frozenset({"critical", "warning", "info"})
RUNBOOK = re.compile(r"^docs/operations\.md#([a-z0-9_-]+)$")


def metric_names(expr: str) -> set[str]:
    return set(METRIC_NAME.findall(expr))


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


# -- loading ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def alerts(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules if "alert" in rule}


@pytest.fixture(scope="module")
def operations() -> str:
    return OPERATIONS.read_text()


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def panel_exprs(dashboard: dict[str, Any]) -> list[str]:
    return [
        target["expr"]
        for panel in all_panels(dashboard["panels"])
        for target in panel.get("targets", [])
    ]


def template_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = []
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        queries.append(query["query"] if isinstance(query, dict) else query)
        if variable.get("definition"):
            queries.append(variable["definition"])
    return queries


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    return panel_exprs(dashboard) + template_queries(dashboard)


# -- metric names -------------------------------------------------------------------------------


def test_the_name_pattern_finds_series_and_only_whole_names() -> None:
    expr = (
        'sum by (shard) (rate(ray_inventory_shard_commands_total{shard=~"$shard"}[5m]))'
        " / sum(xray_inventory_other)"
    )
    assert metric_names(expr) == {"ray_inventory_shard_commands_total"}


def test_every_dashboard_expression_names_catalogued_series(dashboard: dict[str, Any]) -> None:
    exprs = dashboard_exprs(dashboard)
    assert exprs
    unknown = {name: expr for expr in exprs for name in metric_names(expr) - KNOWN_SERIES}
    assert not unknown, f"not in inventory_actors/observability/metric_names.py: {unknown}"
    assert all(metric_names(expr) for expr in exprs), "an expression names no inventory metric"


def test_every_rule_expression_names_catalogued_series(rules: list[dict[str, Any]]) -> None:
    assert rules
    unknown = {
        name: rule["alert"] for rule in rules for name in metric_names(rule["expr"]) - KNOWN_SERIES
    }
    assert not unknown, f"not in inventory_actors/observability/metric_names.py: {unknown}"
    assert all(metric_names(rule["expr"]) for rule in rules)


def test_every_query_aggregates_over_rays_worker_labels(
    dashboard: dict[str, Any], rules: list[dict[str, Any]]
) -> None:
    """Ray labels each series with its worker: a query must sum or max them, not pick one."""
    exprs = panel_exprs(dashboard) + [rule["expr"] for rule in rules]
    bare = [e for e in exprs if not AGGREGATION.search(e) and not e.startswith("absent(")]
    assert not bare


def test_the_dashboard_shows_every_metric(dashboard: dict[str, Any]) -> None:
    shown = {name for expr in panel_exprs(dashboard) for name in metric_names(expr)}

    def is_shown(spec: MetricSpec) -> bool:
        return any(series in shown for series in exported_series(spec))

    missing = [
        spec.exported_name
        for spec in SHARD_METRICS + API_METRICS
        if spec.exported_name not in DASHBOARD_EXEMPT and not is_shown(spec)
    ]
    assert not missing
    assert set(DASHBOARD_EXEMPT) <= {spec.exported_name for spec in ALL_METRICS}


# -- the dashboard ------------------------------------------------------------------------------


def test_the_dashboard_is_importable_with_its_variables(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert dashboard["title"]
    assert dashboard.get("id") is None  # Grafana assigns it on import
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    datasource = variables["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    shard = variables["shard"]
    assert shard["type"] == "query"
    assert shard["multi"] is True
    assert template_queries({"templating": {"list": [shard]}})[0] == (
        "label_values(ray_inventory_shard_last_lsn, shard)"
    )
    assert shard["datasource"]["uid"] == "${datasource}"

    panels = list(all_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        if panel["type"] == "row":
            continue
        assert panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_dashboard_has_the_quantile_panels(dashboard: dict[str, Any]) -> None:
    exprs = panel_exprs(dashboard)
    for bucket in (
        "ray_inventory_shard_batch_commands_bucket",
        "ray_inventory_shard_commit_seconds_bucket",
        "ray_inventory_http_request_seconds_bucket",
    ):
        quantiles = [e for e in exprs if bucket in e and e.startswith("histogram_quantile(")]
        assert {e.split(",")[0] for e in quantiles} == {
            "histogram_quantile(0.5",
            "histogram_quantile(0.99",
        }, bucket
        assert all("le)" in e for e in quantiles), bucket


# -- the alert rules ----------------------------------------------------------------------------


def test_every_alert_exists_with_severity_and_annotations(
    alerts: dict[str, dict[str, Any]], operations: str
) -> None:
    assert set(ALERTS) <= set(alerts)
    anchors = {
        github_anchor(line.lstrip("#"))
        for line in operations.splitlines()
        if re.match(r"#{1,6} ", line)
    }
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["labels"]["severity"] == ALERTS.get(name, rule["labels"]["severity"]), name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        runbook = RUNBOOK.match(annotations["runbook"])
        assert runbook, f"{name}: {annotations['runbook']}"
        assert runbook.group(1) in anchors, f"{name}: no heading for {annotations['runbook']}"


def test_the_shard_down_rules(alerts: dict[str, dict[str, Any]]) -> None:
    down = alerts["InventoryShardDown"]
    assert down["expr"].replace(" ", "") == "maxby(shard)(ray_inventory_shard_up)==0"
    assert down["for"] == "1m"
    assert alerts["InventoryShardUpAbsent"]["expr"].strip() == "absent(ray_inventory_shard_up)"


def test_the_thresholds(alerts: dict[str, dict[str, Any]]) -> None:
    latency = alerts["InventoryCommitLatencyHigh"]["expr"]
    assert "histogram_quantile(0.99" in latency
    assert "ray_inventory_shard_commit_seconds_bucket" in latency
    assert latency.rstrip().endswith("> 0.05")
    ratio = alerts["InventoryHttp5xxRateHigh"]["expr"]
    assert 'status=~"5.."' in ratio
    assert ratio.rstrip().endswith("> 0.01")
    backpressure = alerts["InventoryBackpressure"]["expr"]
    assert 'reason="overloaded"' in backpressure
    assert "ray_inventory_shard_overloaded_total" in backpressure
    assert 'reason="rate-limited"' in alerts["InventoryRateLimited"]["expr"]
    assert (
        "increase(ray_inventory_shard_storage_failures_total"
        in (alerts["InventoryStorageFailures"]["expr"])
    )
    for name in ("InventoryCommitLatencyHigh", "InventoryHttp5xxRateHigh", "InventoryBackpressure"):
        assert alerts[name]["for"] == "5m", name


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool must be installed in CI (make tools)")
        pytest.skip("promtool is not on PATH (make tools installs it)")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- docs/operations.md -------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_METRICS, ids=lambda spec: spec.exported_name)
def test_the_operations_page_lists_the_metric(spec: MetricSpec, operations: str) -> None:
    assert f"`{spec.exported_name}`" in operations
