"""What operators rely on, against the real app: Ray's Prometheus endpoint shows the documented
metrics and they move under load; `/readyz` turns 503 while a shard does not answer, then 200
once it has restarted; request ids reach the shard's JSON logs; the shards and recent events
routes; the console's files."""

import json
import os
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray

from inventory_actors.observability import metric_names as names
from tests.conftest import wait_for
from tests.http.conftest import HttpApp, assert_problem, bearer, stock

pytestmark = pytest.mark.ray

SCRAPE_TIMEOUT_SECONDS = 60.0
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

Sample = tuple[str, dict[str, str], float]


def scrape() -> list[Sample]:
    """Every sample on this node's Ray metrics endpoint."""
    port = ray.nodes()[0]["MetricsExportPort"]  # type: ignore[no-untyped-call]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10.0).text
    samples = []
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found and not line.startswith("#"):
            labels = dict(_LABEL.findall(found.group(2) or ""))
            samples.append((found.group(1), labels, float(found.group(3))))
    return samples


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
    )


def reserve(http: httpx.Client, app: HttpApp, sku: str, ttl_seconds: int = 600) -> str:
    body = {"lines": [{"sku": sku, "quantity": 1}], "ttl_seconds": ttl_seconds}
    answer = http.post("/v1/reservations", json=body, headers=bearer(app.writer_key))
    assert answer.status_code == 201, answer.text
    reservation_id: str = answer.json()["reservation_id"]
    return reservation_id


def test_metrics_exist_with_their_documented_names_and_move(
    http: httpx.Client, http_app: HttpApp
) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 1_000)
    reserve(http, http_app, sku, ttl_seconds=1)  # expires: inventory_shard_expired_holds
    for _ in range(10):
        reserve(http, http_app, sku)
    too_big = http.post(
        "/v1/reservations",
        content=b"x" * (300 * 1024),
        headers={**bearer(http_app.writer_key), "Content-Type": "application/json"},
    )
    assert_problem(too_big, 413, "payload-too-large")
    # Counters show once they have counted; these count only failures, none here.
    rare = {
        names.SHARD_OVERLOADED,
        names.SHARD_STORAGE_FAILURES,
        names.SHARD_SETTLE_REFUSED,
        names.SHARD_MISROUTED,
    }
    expected = {
        series
        for spec in names.ALL_METRICS
        if spec not in rare
        for series in names.exported_series(spec)
    }

    def all_present() -> list[Sample] | None:
        samples = scrape()
        missing = expected - {name for name, _, _ in samples}
        return samples if not missing else None

    before = wait_for(all_present, SCRAPE_TIMEOUT_SECONDS, f"every series of {sorted(expected)}")
    assert total(before, "ray_inventory_http_rejections_total", reason="payload-too-large") >= 1
    assert total(before, "ray_inventory_shard_expired_holds_total") >= 1

    commands = "ray_inventory_shard_commands_total"
    requests = "ray_inventory_http_requests_total"
    route = {"route": "/v1/reservations", "method": "POST", "status": "201"}
    reserved_before = total(before, commands, command="reserve_stock", outcome="ok")
    requests_before = total(before, requests, **route)
    lsn_before = total(before, "ray_inventory_shard_last_lsn")
    for _ in range(20):
        reserve(http, http_app, sku)

    def moved() -> bool:
        after = scrape()
        return (
            total(after, commands, command="reserve_stock", outcome="ok") >= reserved_before + 20
            and total(after, requests, **route) >= requests_before + 20
            and total(after, "ray_inventory_shard_last_lsn") >= lsn_before + 20
        )

    wait_for(moved, SCRAPE_TIMEOUT_SECONDS, "the commands, requests and LSN metrics to move")


def test_readyz_is_503_while_a_shard_does_not_answer_then_200_once_it_has_restarted(
    http: httpx.Client, http_app: HttpApp
) -> None:
    assert http.get("/readyz").status_code == 200
    victim = 1
    sku = http_app.sku(shard=victim)
    stock(http, http_app, sku, 100)
    stuck = ray.get(http_app.shard_actor(victim).status.remote(), timeout=30)

    def not_ready() -> httpx.Response | None:
        answer = http.get("/readyz")
        return answer if answer.status_code == 503 else None

    # A killed shard is down only while Ray restarts it, and a probe sent meanwhile may be held
    # until the restarted shard answers it, ready, within the probe's wait; so a kill alone need
    # never show. A stopped process answers nothing for as long as it stays stopped.
    os.kill(stuck.pid, signal.SIGSTOP)
    try:
        answer = wait_for(not_ready, 30.0, "/readyz to answer 503 while the shard is stopped")
    finally:
        os.kill(stuck.pid, signal.SIGKILL)
    assert answer.headers["Retry-After"]
    body = answer.json()
    assert body["ready"] is False
    states = {shard["shard"]: shard["state"] for shard in body["shards"]}
    assert states[victim] == "unreachable", body
    assert states[1 - victim] == "ready", body
    wait_for(lambda: http.get("/readyz").status_code == 200, 60.0, "/readyz to answer 200 again")
    after = ray.get(http_app.shard_actor(victim).status.remote(), timeout=30)
    assert after.pid != stuck.pid and after.available
    assert http.get(f"/v1/skus/{sku}", headers=bearer(http_app.reader_key)).status_code == 200


def _log_lines(containing: str) -> Iterator[dict[str, Any]]:
    """JSON log lines of this Ray session's processes that mention `containing`."""
    node: Any = ray._private.worker._global_node
    logs = Path(node.get_logs_dir_path())
    for path in logs.rglob("*"):
        if not path.is_file() or path.suffix not in (".out", ".err", ".log"):
            continue
        with path.open(errors="replace") as lines:
            for line in lines:
                if containing in line and line.startswith("{"):
                    try:
                        yield json.loads(line)
                    except ValueError:
                        continue


def test_a_request_id_reaches_the_shards_json_log(http: httpx.Client, http_app: HttpApp) -> None:
    rid = f"trace-{uuid.uuid4().hex}"
    sku = http_app.sku()
    answer = http.post(
        f"/v1/skus/{sku}/adjustments",
        json={"location": "berlin", "delta": 5, "reason": "received"},
        headers={**bearer(http_app.admin_key), "X-Request-Id": rid},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers.get_list("x-request-id") == [rid]

    def both_sides() -> dict[str, dict[str, Any]] | None:
        found = {line["component"]: line for line in _log_lines(rid)}
        return found if {"api", "shard"} <= set(found) else None

    lines = wait_for(both_sides, 30.0, f"JSON log lines of the API and a shard naming {rid}")
    shard_line, api_line = lines["shard"], lines["api"]
    assert rid in shard_line["request_ids"]
    assert shard_line["commands"] == {"AdjustStock": 1}
    assert shard_line["shard"] == http_app.partition.owner(sku=sku)
    assert api_line["request_id"] == rid
    assert api_line["status"] == 200
    assert api_line["route"] == "/v1/skus/{sku}/adjustments"
    assert {"ts", "level", "message"} <= set(api_line)


def test_a_request_without_an_id_gets_one(http: httpx.Client) -> None:
    answer = http.get("/healthz")
    ids = answer.headers.get_list("x-request-id")
    assert len(ids) == 1 and ids[0], answer.headers


def test_shards_route_shows_every_shard_with_its_figures(
    http: httpx.Client, http_app: HttpApp
) -> None:
    sku = http_app.sku(shard=0)
    stock(http, http_app, sku, 10)
    answer = http.get("/v1/shards", headers=bearer(http_app.reader_key))
    assert answer.status_code == 200, answer.text
    shards = answer.json()["shards"]
    assert [shard["shard"] for shard in shards] == [0, 1]
    assert all(shard["state"] == "ready" for shard in shards)
    assert shards[0]["last_lsn"] >= 1 and shards[0]["level_count"] >= 1
    assert http.get("/v1/shards").status_code == 401


def test_recent_events_are_the_newest_first(http: httpx.Client, http_app: HttpApp) -> None:
    skus = [http_app.sku(shard=0), http_app.sku(shard=1), http_app.sku(shard=0)]
    for sku in skus:
        stock(http, http_app, sku, 7)
    answer = http.get("/v1/events/recent?limit=50", headers=bearer(http_app.reader_key))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    # Other tests' holds may expire meanwhile: look at this test's SKUs only.
    ours = [event["sku"] for event in body["events"] if event["sku"] in skus]
    assert ours == skus[::-1]
    assert len(body["events"]) <= 50
    assert body["unavailable_shards"] == []
    too_many = http.get("/v1/events/recent?limit=100000", headers=bearer(http_app.reader_key))
    assert_problem(too_many, 422, "validation-error")


def test_console_files_are_served_and_nothing_else(http: httpx.Client) -> None:
    page = http.get("/console")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'id="sku-search"' in page.text and 'id="shards"' in page.text
    for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        answer = http.get(f"/console/{name}")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(kind)
    assert_problem(http.get("/console/..%2Fservice.py"), 404, "not-found")
    assert_problem(http.get("/console/index.py"), 404, "not-found")


def test_metric_catalogue_names_are_unique_and_prefixed() -> None:
    seen = [spec.name for spec in names.ALL_METRICS]
    assert len(seen) == len(set(seen))
    assert all(name.startswith("inventory_") for name in seen)
