"""Many clients racing for the last units of one SKU, over HTTP."""

import asyncio
from collections import Counter

import httpx
import pytest

from tests.http.conftest import HttpApp, assert_problem, bearer, sku_view, stock

pytestmark = pytest.mark.ray

ON_HAND = 100
CLIENTS = 300


async def _race(app: HttpApp, sku: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=app.base_url, timeout=60.0, limits=limits) as client:
        body = {"lines": [{"sku": sku, "quantity": 1}], "ttl_seconds": 600}
        headers = bearer(app.writer_key)
        return list(
            await asyncio.gather(
                *(
                    client.post("/v1/reservations", json=body, headers=headers)
                    for _ in range(CLIENTS)
                )
            )
        )


def test_300_concurrent_reservations_of_100_units_never_oversell(
    http_app: HttpApp, http: httpx.Client
) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, ON_HAND)
    answers = asyncio.run(_race(http_app, sku))
    statuses = Counter(answer.status_code for answer in answers)
    assert statuses == {201: ON_HAND, 409: CLIENTS - ON_HAND}, statuses
    for answer in answers:
        if answer.status_code == 409:
            assert_problem(answer, 409, "insufficient-stock")
    held = {a.json()["reservation_id"] for a in answers if a.status_code == 201}
    assert len(held) == ON_HAND
    view = sku_view(http, http_app, sku)
    assert view["totals"] == {"on_hand": ON_HAND, "reserved": ON_HAND, "available": 0}
