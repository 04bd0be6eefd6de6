"""Idempotency-Key replays and If-Match conditions, over HTTP."""

import httpx
import pytest

from serve_app.keys import Role
from tests.conftest import wait_for
from tests.http.conftest import HttpApp, assert_problem, bearer, sku_view, stock

pytestmark = pytest.mark.ray


def test_a_replayed_reservation_returns_the_stored_answer_and_changes_nothing(
    http_app: HttpApp, http: httpx.Client
) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 10)
    headers = {**bearer(http_app.writer_key), "Idempotency-Key": f"order-{sku}"}
    body = {"lines": [{"sku": sku, "quantity": 3}], "reference": "order-1"}
    first = http.post("/v1/reservations", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    after_first = sku_view(http, http_app, sku)

    replay = http.post("/v1/reservations", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert sku_view(http, http_app, sku) == after_first
    assert after_first["totals"]["reserved"] == 3


def test_a_replayed_adjustment_keeps_the_version(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 10)
    headers = {**bearer(http_app.admin_key), "Idempotency-Key": f"po-{sku}"}
    body = {"location": "berlin", "delta": 5, "reason": "received", "reference": "po-1"}
    first = http.post(f"/v1/skus/{sku}/adjustments", json=body, headers=headers)
    assert first.status_code == 200 and first.json()["totals"]["on_hand"] == 15
    for _ in range(2):
        replay = http.post(f"/v1/skus/{sku}/adjustments", json=body, headers=headers)
        assert replay.status_code == 200
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json() == first.json()
    view = sku_view(http, http_app, sku)
    assert view["version"] == first.json()["version"]
    assert view["totals"]["on_hand"] == 15

    # The same key with another body (or path) is refused and changes nothing.
    other = {**body, "delta": 6}
    assert_problem(
        http.post(f"/v1/skus/{sku}/adjustments", json=other, headers=headers),
        422,
        "idempotency-key-reused",
    )
    neighbour = http_app.sku(shard=http_app.partition.owner(sku=sku))
    elsewhere = http.post(f"/v1/skus/{neighbour}/adjustments", json=body, headers=headers)
    assert_problem(elsewhere, 422, "idempotency-key-reused")
    assert sku_view(http, http_app, sku) == view
    assert_problem(
        http.get(f"/v1/skus/{neighbour}", headers=bearer(http_app.admin_key)), 404, "not-found"
    )


def test_a_key_reused_for_a_sku_of_another_shard_is_422(
    http_app: HttpApp, http: httpx.Client
) -> None:
    first, other = http_app.sku(shard=0), http_app.sku(shard=1)
    headers = {**bearer(http_app.admin_key), "Idempotency-Key": f"po-{first}"}
    body = {"location": "berlin", "delta": 5, "reason": "received"}
    assert http.post(f"/v1/skus/{first}/adjustments", json=body, headers=headers).status_code == 200
    again = http.post(f"/v1/skus/{other}/adjustments", json=body, headers=headers)
    assert_problem(again, 422, "idempotency-key-reused")
    admin = bearer(http_app.admin_key)
    assert_problem(http.get(f"/v1/skus/{other}", headers=admin), 404, "not-found")
    # The first request is still replayed as it was, from its own shard.
    replay = http.post(f"/v1/skus/{first}/adjustments", json=body, headers=headers)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"


def test_a_refusal_is_replayed_too(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 2)
    headers = {**bearer(http_app.writer_key), "Idempotency-Key": f"short-{sku}"}
    body = {"lines": [{"sku": sku, "quantity": 5}]}
    first = http.post("/v1/reservations", json=body, headers=headers)
    problem = assert_problem(first, 409, "insufficient-stock")
    # Now there would be enough; the key still answers what it answered first.
    stock(http, http_app, sku, 50)
    replay = http.post("/v1/reservations", json=body, headers=headers)
    assert assert_problem(replay, 409, "insufficient-stock") == problem
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert sku_view(http, http_app, sku)["totals"]["reserved"] == 0


def test_two_api_keys_with_the_same_idempotency_key_do_not_collide(
    http_app: HttpApp, http: httpx.Client
) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 10)
    _, other_writer = http_app.new_key(Role.WRITER)
    body = {"lines": [{"sku": sku, "quantity": 1}]}
    wait_for(
        lambda: http.get(f"/v1/skus/{sku}", headers=bearer(other_writer)).status_code == 200,
        10,
        "the app to accept a new key",
    )
    answers = [
        http.post(
            "/v1/reservations",
            json=body,
            headers={**bearer(key), "Idempotency-Key": "cart-1"},
        )
        for key in (http_app.writer_key, other_writer)
    ]
    assert [a.status_code for a in answers] == [201, 201]
    assert all("Idempotent-Replayed" not in a.headers for a in answers)
    assert answers[0].json()["reservation_id"] != answers[1].json()["reservation_id"]
    assert sku_view(http, http_app, sku)["totals"]["reserved"] == 2


def test_if_match_guards_every_stock_mutation(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 10)
    auth = bearer(http_app.admin_key)
    first = http.get(f"/v1/skus/{sku}", headers=auth)
    etag = first.headers["ETag"]
    version = first.json()["version"]
    assert etag == f'"{version}"'
    stale = f'"{version - 1}"'
    requests = [
        (
            "POST",
            f"/v1/skus/{sku}/adjustments",
            {"location": "berlin", "delta": 1, "reason": "other"},
        ),
        ("PUT", f"/v1/skus/{sku}/locations/paris", {"on_hand": 4}),
        (
            "POST",
            f"/v1/skus/{sku}/transfers",
            {"from_location": "berlin", "to_location": "paris", "quantity": 2},
        ),
    ]
    for method, path, body in requests:
        answer = http.request(method, path, json=body, headers={**auth, "If-Match": stale})
        problem = assert_problem(answer, 412, "version-conflict")
        assert problem["current_version"] == version
        assert sku_view(http, http_app, sku) == first.json()

    for method, path, body in requests:
        answer = http.request(method, path, json=body, headers={**auth, "If-Match": etag})
        assert answer.status_code == 200, answer.text
        version += 1
        assert answer.json()["version"] == version
        assert answer.headers["ETag"] == f'"{version}"' != etag
        etag = answer.headers["ETag"]
    view = sku_view(http, http_app, sku)
    by_location = {level["location"]: level["on_hand"] for level in view["locations"]}
    assert by_location == {"berlin": 9, "paris": 6}
    assert http.get(f"/v1/skus/{sku}", headers=auth).headers["ETag"] == etag
