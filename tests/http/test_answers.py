"""Documented answers of single routes (docs/api-contract.md): `extend` answers the new
`expires_at`, measured from now; `skus:query` lists the SKUs without stock under `missing`."""

import time
from datetime import datetime

import httpx
import pytest

from tests.http.conftest import HttpApp, bearer, sku_view, stock

pytestmark = pytest.mark.ray

# The shards' clock is this machine's wall clock, read to the millisecond; a second either way
# covers that and nothing else (the answers compared differ by minutes).
CLOCK_SLACK_SECONDS = 1.0


def _seconds(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def _extend(http: httpx.Client, app: HttpApp, hold_id: str, ttl_seconds: int) -> dict[str, str]:
    """Extend `hold_id`; assert its answer is the reservation expiring `ttl_seconds` from the
    moment the shard ran the extension, and return the answer."""
    before = time.time()
    answer = http.post(
        f"/v1/reservations/{hold_id}/extend",
        json={"ttl_seconds": ttl_seconds},
        headers=bearer(app.writer_key),
    )
    after = time.time()
    assert answer.status_code == 200, answer.text
    body: dict[str, str] = answer.json()
    assert body["reservation_id"] == hold_id and body["status"] == "active", body
    expires_s = _seconds(body["expires_at"])
    assert before + ttl_seconds - CLOCK_SLACK_SECONDS <= expires_s, (before, body)
    assert expires_s <= after + ttl_seconds + CLOCK_SLACK_SECONDS, (after, body)
    return body


@pytest.mark.parametrize("shards", [1, 2], ids=["one shard", "across shards"])
def test_extend_answers_the_new_expiry_measured_from_now(
    http_app: HttpApp, http: httpx.Client, shards: int
) -> None:
    skus = [http_app.sku(shard=shard) for shard in range(shards)]
    for sku in skus:
        stock(http, http_app, sku, 5)
    placed = http.post(
        "/v1/reservations",
        json={"lines": [{"sku": sku, "quantity": 2} for sku in skus], "ttl_seconds": 60},
        headers=bearer(http_app.writer_key),
    )
    assert placed.status_code == 201, placed.text
    hold_id = placed.json()["reservation_id"]
    try:
        longer = _extend(http, http_app, hold_id, 3_600)
        assert _seconds(longer["expires_at"]) > _seconds(placed.json()["expires_at"]) + 3_000
        assert longer["lines"] == placed.json()["lines"]
        read = http.get(f"/v1/reservations/{hold_id}", headers=bearer(http_app.reader_key))
        assert read.status_code == 200 and read.json() == longer, read.text
        # From now, not added to the expiry it had: a shorter time to live moves it earlier.
        shorter = _extend(http, http_app, hold_id, 600)
        assert _seconds(shorter["expires_at"]) < _seconds(longer["expires_at"])
        for sku in skus:
            assert sku_view(http, http_app, sku)["totals"]["reserved"] == 2
    finally:
        http.post(f"/v1/reservations/{hold_id}/release", headers=bearer(http_app.writer_key))


def test_query_answers_stocked_skus_as_items_and_the_others_as_missing(
    http_app: HttpApp, http: httpx.Client
) -> None:
    stocked = [http_app.sku(shard=0), http_app.sku(shard=1)]
    never = [http_app.sku(shard=1), http_app.sku(shard=0)]
    for sku in stocked:
        stock(http, http_app, sku, 3)
    asked = [never[0], stocked[0], never[1], stocked[1]]
    answer = http.post("/v1/skus:query", json={"skus": asked}, headers=bearer(http_app.reader_key))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"items", "missing"}, body
    # Each in the order asked; an item is the SKU's view, as GET /v1/skus/{sku} has it.
    assert body["missing"] == never
    assert body["items"] == [sku_view(http, http_app, sku) for sku in stocked]

    none_known = http.post(
        "/v1/skus:query", json={"skus": never}, headers=bearer(http_app.reader_key)
    )
    assert none_known.status_code == 200, none_known.text
    assert none_known.json() == {"items": [], "missing": never}
