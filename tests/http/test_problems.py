"""Every problem type of the contract, produced over HTTP with its documented status, media type
and body. (rate-limited: test_rate_limit.py; shard-unavailable: test_shard_outage.py.)"""

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from inventory_actors.shard.partitioning import new_hold_id
from serve_app.keys import Role
from tests.conftest import wait_for
from tests.http.conftest import HttpApp, assert_problem, bearer, sku_view, stock

pytestmark = pytest.mark.ray


def _reserve(
    http: httpx.Client, app: HttpApp, sku: str, quantity: int, **extra: Any
) -> httpx.Response:
    body = {"lines": [{"sku": sku, "quantity": quantity}], **extra}
    return http.post("/v1/reservations", json=body, headers=bearer(app.writer_key))


def test_a_body_that_is_not_json_is_400(http_app: HttpApp, http: httpx.Client) -> None:
    answer = http.post(
        "/v1/reservations",
        content=b'{"lines": [',
        headers={**bearer(http_app.writer_key), "Content-Type": "application/json"},
    )
    assert_problem(answer, 400, "validation-error")


@pytest.mark.parametrize(
    "if_match",
    [
        b"seven",
        # "\xb2" is "²" in the header's latin-1: a digit to `str.isdigit`, none to `int`.
        b'"\xb2"',
        b'W/"7\xb9"',
        b'"' + b"9" * 5_000 + b'"',  # more digits than Python turns into an int
    ],
)
def test_a_malformed_if_match_is_400(
    http_app: HttpApp, http: httpx.Client, if_match: bytes
) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 5)
    before = sku_view(http, http_app, sku)
    for method, path, body in [
        (
            "POST",
            f"/v1/skus/{sku}/adjustments",
            {"location": "berlin", "delta": 1, "reason": "received"},
        ),
        ("PUT", f"/v1/skus/{sku}/locations/berlin", {"on_hand": 9}),
        (
            "POST",
            f"/v1/skus/{sku}/transfers",
            {"from_location": "berlin", "to_location": "paris", "quantity": 1},
        ),
    ]:
        headers = [(b"authorization", f"Bearer {http_app.admin_key}".encode())]
        headers.append((b"if-match", if_match))
        answer = http.request(method, path, json=body, headers=headers)
        assert_problem(answer, 400, "validation-error")
        assert "If-Match" in answer.json()["detail"]
    assert sku_view(http, http_app, sku) == before


def _invalid_requests(sku: str) -> Iterator[tuple[str, str, str, Any, dict[str, str]]]:
    """(name, method, path, json body, extra headers) of requests the contract refuses."""
    adjust = f"/v1/skus/{sku}/adjustments"
    yield "sku id with a space", "GET", "/v1/skus/bad%20id", None, {}
    yield "sku id too long", "GET", f"/v1/skus/{'x' * 129}", None, {}
    yield (
        "line sku id bad",
        "POST",
        "/v1/reservations",
        {"lines": [{"sku": "bad id!", "quantity": 1}]},
        {},
    )
    yield (
        "location id bad",
        "POST",
        adjust,
        {"location": "ber lin", "delta": 1, "reason": "received"},
        {},
    )
    yield (
        "quantity 0",
        "POST",
        "/v1/reservations",
        {"lines": [{"sku": sku, "quantity": 0}]},
        {},
    )
    yield (
        "quantity above 10^9",
        "POST",
        "/v1/reservations",
        {"lines": [{"sku": sku, "quantity": 1_000_000_001}]},
        {},
    )
    yield "delta 0", "POST", adjust, {"location": "berlin", "delta": 0, "reason": "received"}, {}
    yield (
        "unknown reason",
        "POST",
        adjust,
        {"location": "berlin", "delta": 1, "reason": "found-it"},
        {},
    )
    yield (
        "extra field",
        "POST",
        adjust,
        {"location": "berlin", "delta": 1, "reason": "received", "color": "red"},
        {},
    )
    yield (
        "negative on_hand",
        "PUT",
        f"/v1/skus/{sku}/locations/berlin",
        {"on_hand": -1},
        {},
    )
    yield "1,001 query skus", "POST", "/v1/skus:query", {"skus": [sku] * 1001}, {}
    yield "no query skus", "POST", "/v1/skus:query", {"skus": []}, {}
    yield (
        "10,001 batch operations",
        "POST",
        "/v1/batch",
        {"operations": [{"op": "release", "reservation_id": "r_000x"}] * 10_001},
        {},
    )
    for ttl in (0, 86_401):
        yield (
            f"ttl {ttl}",
            "POST",
            "/v1/reservations",
            {"lines": [{"sku": sku, "quantity": 1}], "ttl_seconds": ttl},
            {},
        )
    yield "no lines", "POST", "/v1/reservations", {"lines": []}, {}
    yield (
        "101 lines",
        "POST",
        "/v1/reservations",
        {"lines": [{"sku": sku, "quantity": 1}] * 101},
        {},
    )
    line = {"lines": [{"sku": sku, "quantity": 1}]}
    yield "Idempotency-Key of 256", "POST", "/v1/reservations", line, {"Idempotency-Key": "k" * 256}
    yield "empty Idempotency-Key", "POST", "/v1/reservations", line, {"Idempotency-Key": ""}
    yield (
        "Idempotency-Key with a control character",
        "POST",
        "/v1/reservations",
        line,
        {"Idempotency-Key": "a\tb"},
    )


def test_invalid_input_is_422_and_changes_nothing(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 5)
    before = sku_view(http, http_app, sku)
    for name, method, path, body, headers in _invalid_requests(sku):
        answer = http.request(
            method, path, json=body, headers={**bearer(http_app.admin_key), **headers}
        )
        try:
            problem = assert_problem(answer, 422, "validation-error")
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None
        assert problem["detail"], name
    assert sku_view(http, http_app, sku) == before


def test_a_request_without_a_known_active_key_is_401(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 1)
    unknown = "inv_000000000000_" + "A" * 43
    for headers in (
        {},
        bearer(unknown),
        bearer("not-even-shaped-like-a-key"),
        {"Authorization": f"Basic {http_app.admin_key}"},
    ):
        answer = http.get(f"/v1/skus/{sku}", headers=headers)
        assert_problem(answer, 401, "unauthorized")
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")

    key_id, key = http_app.new_key(Role.READER)
    wait_for(
        lambda: http.get(f"/v1/skus/{sku}", headers=bearer(key)).status_code == 200,
        10,
        "the app to accept a new key",
    )
    http_app.keys.revoke(key_id)
    wait_for(
        lambda: http.get(f"/v1/skus/{sku}", headers=bearer(key)).status_code == 401,
        10,
        "the app to refuse a revoked key",
    )
    assert_problem(http.get(f"/v1/skus/{sku}", headers=bearer(key)), 401, "unauthorized")


def test_a_role_too_low_is_403_and_changes_nothing(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 5)
    answer = http.post(
        "/v1/reservations",
        json={"lines": [{"sku": sku, "quantity": 1}]},
        headers=bearer(http_app.reader_key),
    )
    assert_problem(answer, 403, "forbidden")
    assert sku_view(http, http_app, sku)["totals"] == {"on_hand": 5, "reserved": 0, "available": 5}


def test_unknown_things_are_404(http_app: HttpApp, http: httpx.Client) -> None:
    auth = bearer(http_app.admin_key)
    assert_problem(http.get(f"/v1/skus/{http_app.sku()}", headers=auth), 404, "not-found")
    unknown_hold = new_hold_id(7)
    assert_problem(http.get(f"/v1/reservations/{unknown_hold}", headers=auth), 404, "not-found")
    for verb in ("commit", "release"):
        answer = http.post(f"/v1/reservations/{unknown_hold}/{verb}", headers=auth)
        assert_problem(answer, 404, "not-found")
    answer = http.post(
        f"/v1/reservations/{unknown_hold}/extend", json={"ttl_seconds": 60}, headers=auth
    )
    assert_problem(answer, 404, "not-found")
    assert_problem(http.get("/v1/no-such-route", headers=auth), 404, "not-found")
    assert_problem(http.get("/nothing/here"), 404, "not-found")


def test_short_stock_is_409_with_the_short_lines(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    missing = http_app.sku(shard=http_app.partition.owner(sku=sku))
    stock(http, http_app, sku, 3)
    answer = http.post(
        "/v1/reservations",
        json={"lines": [{"sku": sku, "quantity": 4}, {"sku": missing, "quantity": 1}]},
        headers=bearer(http_app.writer_key),
    )
    problem = assert_problem(answer, 409, "insufficient-stock")
    short = {line["sku"]: (line["requested"], line["available"]) for line in problem["lines"]}
    assert short == {sku: (4, 3), missing: (1, 0)}
    assert sku_view(http, http_app, sku)["totals"] == {"on_hand": 3, "reserved": 0, "available": 3}

    # A negative adjustment below what is reserved is refused the same way.
    assert _reserve(http, http_app, sku, 2).status_code == 201
    answer = http.post(
        f"/v1/skus/{sku}/adjustments",
        json={"location": "berlin", "delta": -2, "reason": "damaged"},
        headers=bearer(http_app.admin_key),
    )
    assert_problem(answer, 409, "insufficient-stock")
    assert sku_view(http, http_app, sku)["totals"] == {"on_hand": 3, "reserved": 2, "available": 1}


def test_commit_after_release_is_409_reservation_not_active(
    http_app: HttpApp, http: httpx.Client
) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 5)
    created = _reserve(http, http_app, sku, 2)
    assert created.status_code == 201, created.text
    hold = created.json()["reservation_id"]
    auth = bearer(http_app.writer_key)
    released = http.post(f"/v1/reservations/{hold}/release", headers=auth)
    assert released.status_code == 200 and released.json()["status"] == "released"
    again = http.post(f"/v1/reservations/{hold}/release", headers=auth)
    assert again.status_code == 200 and again.json()["status"] == "released"
    assert_problem(
        http.post(f"/v1/reservations/{hold}/commit", headers=auth), 409, "reservation-not-active"
    )
    answer = http.post(f"/v1/reservations/{hold}/extend", json={"ttl_seconds": 60}, headers=auth)
    assert_problem(answer, 409, "reservation-not-active")
    assert sku_view(http, http_app, sku)["totals"] == {"on_hand": 5, "reserved": 0, "available": 5}


def test_a_stale_if_match_is_412_and_changes_nothing(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 5)
    before = http.get(f"/v1/skus/{sku}", headers=bearer(http_app.admin_key))
    version = before.json()["version"]
    assert before.headers["ETag"] == f'"{version}"'
    answer = http.post(
        f"/v1/skus/{sku}/adjustments",
        json={"location": "berlin", "delta": 1, "reason": "received"},
        headers={**bearer(http_app.admin_key), "If-Match": f'"{version + 1}"'},
    )
    assert_problem(answer, 412, "version-conflict")
    assert sku_view(http, http_app, sku) == before.json()


def test_a_body_above_256_kib_is_413(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    reference = "x" * (256 * 1024)
    body = {"lines": [{"sku": sku, "quantity": 1}], "reference": reference}
    answer = http.post("/v1/reservations", json=body, headers=bearer(http_app.writer_key))
    assert_problem(answer, 413, "payload-too-large")

    # Without a Content-Length (chunked), the body is cut off once it grows past the limit.
    def chunks() -> Iterator[bytes]:
        yield b'{"lines": [{"sku": "' + sku.encode() + b'", "quantity": 1}], "reference": "'
        for _ in range(40):
            yield b"y" * 8192
        yield b'"}'

    answer = http.post(
        "/v1/reservations",
        content=chunks(),
        headers={**bearer(http_app.writer_key), "Content-Type": "application/json"},
    )
    assert_problem(answer, 413, "payload-too-large")
    assert_problem(
        http.get(f"/v1/skus/{sku}", headers=bearer(http_app.admin_key)), 404, "not-found"
    )


def test_a_key_reused_for_another_body_is_422(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 5)
    headers = {**bearer(http_app.writer_key), "Idempotency-Key": f"reuse-{sku}"}
    first = http.post(
        "/v1/reservations", json={"lines": [{"sku": sku, "quantity": 1}]}, headers=headers
    )
    assert first.status_code == 201, first.text
    other = http.post(
        "/v1/reservations", json={"lines": [{"sku": sku, "quantity": 2}]}, headers=headers
    )
    assert_problem(other, 422, "idempotency-key-reused")
    assert sku_view(http, http_app, sku)["totals"]["reserved"] == 1
