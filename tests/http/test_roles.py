"""Who may call what: for every route, no key is 401, a lower role 403 (and changes nothing),
the required role and every higher one succeed."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from serve_app.keys import Role
from tests.http.conftest import HttpApp, assert_problem, bearer, sku_view, stock

pytestmark = pytest.mark.ray


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    # (path, json body) for a SKU with stock at berlin and a fresh active reservation of it.
    request: Callable[[str, str], tuple[str, Any]]
    role: Role
    success: int = 200


ROUTES = [
    Route("get sku", "GET", lambda sku, hold: (f"/v1/skus/{sku}", None), Role.READER),
    Route("query skus", "POST", lambda sku, hold: ("/v1/skus:query", {"skus": [sku]}), Role.READER),
    Route(
        "get reservation", "GET", lambda sku, hold: (f"/v1/reservations/{hold}", None), Role.READER
    ),
    Route(
        "reserve",
        "POST",
        lambda sku, hold: ("/v1/reservations", {"lines": [{"sku": sku, "quantity": 1}]}),
        Role.WRITER,
        201,
    ),
    Route(
        "commit", "POST", lambda sku, hold: (f"/v1/reservations/{hold}/commit", None), Role.WRITER
    ),
    Route(
        "release", "POST", lambda sku, hold: (f"/v1/reservations/{hold}/release", None), Role.WRITER
    ),
    Route(
        "extend",
        "POST",
        lambda sku, hold: (f"/v1/reservations/{hold}/extend", {"ttl_seconds": 60}),
        Role.WRITER,
    ),
    Route(
        "batch of reservation operations",
        "POST",
        lambda sku, hold: (
            "/v1/batch",
            {
                "operations": [
                    {"op": "reserve", "lines": [{"sku": sku, "quantity": 1}]},
                    {"op": "release", "reservation_id": hold},
                ]
            },
        ),
        Role.WRITER,
    ),
    Route(
        "adjust",
        "POST",
        lambda sku, hold: (
            f"/v1/skus/{sku}/adjustments",
            {"location": "berlin", "delta": 1, "reason": "received"},
        ),
        Role.ADMIN,
    ),
    Route(
        "count",
        "PUT",
        lambda sku, hold: (f"/v1/skus/{sku}/locations/paris", {"on_hand": 3}),
        Role.ADMIN,
    ),
    Route(
        "transfer",
        "POST",
        lambda sku, hold: (
            f"/v1/skus/{sku}/transfers",
            {"from_location": "berlin", "to_location": "paris", "quantity": 1},
        ),
        Role.ADMIN,
    ),
    Route(
        "batch with a stock operation",
        "POST",
        lambda sku, hold: (
            "/v1/batch",
            {
                "operations": [
                    {"op": "reserve", "lines": [{"sku": sku, "quantity": 1}]},
                    {"op": "set", "sku": sku, "location": "paris", "on_hand": 7},
                ]
            },
        ),
        Role.ADMIN,
    ),
]


def _keys(app: HttpApp) -> dict[Role, str]:
    return {Role.READER: app.reader_key, Role.WRITER: app.writer_key, Role.ADMIN: app.admin_key}


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: route.name)
def test_each_route_needs_its_role(route: Route, http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 100)

    def call(key: str | None) -> httpx.Response:
        created = http.post(
            "/v1/reservations",
            json={"lines": [{"sku": sku, "quantity": 1}]},
            headers=bearer(http_app.admin_key),
        )
        assert created.status_code == 201, created.text
        path, body = route.request(sku, created.json()["reservation_id"])
        headers = {} if key is None else bearer(key)
        return http.request(route.method, path, json=body, headers=headers)

    assert_problem(call(None), 401, "unauthorized")
    for role, key in _keys(http_app).items():
        if role >= route.role:
            continue
        before = sku_view(http, http_app, sku)
        assert_problem(call(key), 403, "forbidden")
        after = sku_view(http, http_app, sku)
        # Only the reservation `call` made itself changed the SKU.
        assert after["version"] == before["version"] + 1
        assert after["totals"]["reserved"] == before["totals"]["reserved"] + 1
        assert after["totals"]["on_hand"] == before["totals"]["on_hand"]
    for role, key in _keys(http_app).items():
        if role < route.role:
            continue
        answer = call(key)
        assert answer.status_code == route.success, (role, answer.text)
        for result in answer.json().get("results", []):
            assert result["status"] in (200, 201), answer.text
