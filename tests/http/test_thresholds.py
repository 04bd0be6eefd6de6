"""Low-stock thresholds and alerts over real HTTP: admins set them, readers see what is low
now, and a crossing and its recovery show in `GET /v1/alerts`."""

from typing import Any

import httpx
import pytest

from tests.http.conftest import HttpApp, assert_problem, bearer, stock

pytestmark = pytest.mark.ray


def put_threshold(
    http: httpx.Client, app: HttpApp, sku: str, body: Any, key: str | None = None, **headers: str
) -> httpx.Response:
    sent = {**bearer(app.admin_key), **headers}
    if key is not None:
        sent["Idempotency-Key"] = key
    return http.put(f"/v1/skus/{sku}/locations/berlin/threshold", json=body, headers=sent)


def alerts_of(http: httpx.Client, app: HttpApp, sku: str) -> list[dict[str, Any]]:
    answer = http.get("/v1/alerts", headers=bearer(app.reader_key))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["unavailable_shards"] == []
    listed = [(a["sku"], a["location"]) for a in body["alerts"]]
    assert listed == sorted(listed)
    return [alert for alert in body["alerts"] if alert["sku"] == sku]


def test_an_admin_sets_a_threshold_and_alerts_follow_a_crossing_and_a_recovery(
    http: httpx.Client, http_app: HttpApp
) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 12)
    answer = put_threshold(http, http_app, sku, {"low_stock_below": 10})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"sku": sku, "location": "berlin", "low_stock_below": 10, "low": False}
    assert alerts_of(http, http_app, sku) == []

    reserved = http.post(
        "/v1/reservations",
        json={"lines": [{"sku": sku, "quantity": 5, "location": "berlin"}]},
        headers=bearer(http_app.writer_key),
    )
    assert reserved.status_code == 201, reserved.text
    expected = {"sku": sku, "location": "berlin", "available": 7, "low_stock_below": 10}
    assert alerts_of(http, http_app, sku) == [expected]

    hold_id = reserved.json()["reservation_id"]
    released = http.post(f"/v1/reservations/{hold_id}/release", headers=bearer(http_app.writer_key))
    assert released.status_code == 200, released.text
    assert alerts_of(http, http_app, sku) == []

    read = http.get(
        f"/v1/skus/{sku}/locations/berlin/threshold", headers=bearer(http_app.reader_key)
    )
    assert read.status_code == 200, read.text
    assert read.json() == {"sku": sku, "location": "berlin", "low_stock_below": 10, "low": False}


def test_a_threshold_above_stock_is_low_at_once_and_null_removes_it(
    http: httpx.Client, http_app: HttpApp
) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 3)
    answer = put_threshold(http, http_app, sku, {"low_stock_below": 5})
    assert answer.json()["low"] is True
    assert [a["available"] for a in alerts_of(http, http_app, sku)] == [3]

    removed = put_threshold(http, http_app, sku, {"low_stock_below": None})
    assert removed.status_code == 200, removed.text
    assert removed.json() == {
        "sku": sku,
        "location": "berlin",
        "low_stock_below": None,
        "low": False,
    }
    assert alerts_of(http, http_app, sku) == []


def test_a_retried_threshold_with_its_idempotency_key_is_replayed(
    http: httpx.Client, http_app: HttpApp
) -> None:
    sku = http_app.sku()
    first = put_threshold(http, http_app, sku, {"low_stock_below": 4}, key=f"th-{sku}")
    again = put_threshold(http, http_app, sku, {"low_stock_below": 4}, key=f"th-{sku}")
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    other = put_threshold(http, http_app, sku, {"low_stock_below": 5}, key=f"th-{sku}")
    assert_problem(other, 422, "idempotency-key-reused")


def test_a_writer_may_not_set_a_threshold(http: httpx.Client, http_app: HttpApp) -> None:
    answer = http.put(
        f"/v1/skus/{http_app.sku()}/locations/berlin/threshold",
        json={"low_stock_below": 10},
        headers=bearer(http_app.writer_key),
    )
    assert_problem(answer, 403, "forbidden")


@pytest.mark.parametrize(
    "body",
    [{"low_stock_below": -1}, {"low_stock_below": 10**12 + 1}, {"low_stock_below": "10"}, {}],
    ids=repr,
)
def test_a_bad_threshold_is_refused(http: httpx.Client, http_app: HttpApp, body: Any) -> None:
    assert_problem(put_threshold(http, http_app, http_app.sku(), body), 422, "validation-error")


def test_alerts_need_a_key(http: httpx.Client) -> None:
    assert_problem(http.get("/v1/alerts"), 401, "unauthorized")
