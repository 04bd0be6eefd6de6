"""Per-key rate limits over HTTP: a burst over the reader limit (100/s, burst 100) is refused
with 429, and the key is served again once Retry-After has passed; a batch costs a token per
operation, and one costing more than the writer burst (5,000) is refused whole."""

import asyncio
import time

import httpx
import pytest

from inventory_actors.shard.partitioning import new_hold_id
from serve_app.keys import Role
from tests.conftest import wait_for
from tests.http.conftest import HttpApp, assert_problem, bearer, sku_view, stock

pytestmark = pytest.mark.ray

BURST = 100
WAVE = 250
WRITER_BURST = 5_000  # tests/http/conftest.py


async def _wave(app: HttpApp, path: str, key: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=WAVE, max_keepalive_connections=WAVE)
    async with httpx.AsyncClient(base_url=app.base_url, timeout=60.0, limits=limits) as client:
        return list(
            await asyncio.gather(*(client.get(path, headers=bearer(key)) for _ in range(WAVE)))
        )


def test_a_burst_over_the_limit_is_429_until_retry_after_has_passed(
    http_app: HttpApp, http: httpx.Client
) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 1)
    path = f"/v1/skus/{sku}"
    _, key = http_app.new_key(Role.READER)
    wait_for(
        lambda: http.get(path, headers=bearer(key)).status_code == 200,
        10,
        "the app to accept a new key",
    )

    refused: list[httpx.Response] = []
    deadline = time.monotonic() + 30
    while not refused:
        assert time.monotonic() < deadline, "no 429 after 30 s of bursts"
        answers = asyncio.run(_wave(http_app, path, key))
        assert {a.status_code for a in answers} <= {200, 429}
        served = [a for a in answers if a.status_code == 200]
        refused = [a for a in answers if a.status_code == 429]
        # Served answers say what is left of the burst.
        assert all(a.headers["RateLimit-Limit"] == str(BURST) for a in served)
    refused_at = time.monotonic()

    last = refused[-1]
    assert_problem(last, 429, "rate-limited")
    retry_after = int(last.headers["Retry-After"])
    assert 1 <= retry_after <= 2
    assert last.headers["RateLimit-Limit"] == str(BURST)
    assert last.headers["RateLimit-Remaining"] == "0"
    assert int(last.headers["RateLimit-Reset"]) >= 1
    # Buckets are per key: another reader key is served meanwhile.
    assert http.get(path, headers=bearer(http_app.reader_key)).status_code == 200

    # Refused requests take no tokens: polling does not keep the key locked out.
    wait_for(
        lambda: http.get(path, headers=bearer(key)).status_code == 200,
        retry_after + 5,
        "the key to be served again after Retry-After",
    )
    assert time.monotonic() - refused_at <= retry_after + 5


def test_a_batch_costs_one_token_per_operation_and_beyond_the_burst_is_refused_whole(
    http_app: HttpApp, http: httpx.Client
) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 10)
    _, key = http_app.new_key(Role.WRITER)
    wait_for(
        lambda: http.get(f"/v1/skus/{sku}", headers=bearer(key)).status_code == 200,
        10,
        "the app to accept a new key",
    )
    # Commits of a reservation that does not exist: cheap, and they change nothing.
    commits = [{"op": "commit", "reservation_id": new_hold_id(7)}] * 3_000
    answer = http.post("/v1/batch", json={"operations": commits}, headers=bearer(key))
    assert answer.status_code == 200, answer.text
    assert {r["status"] for r in answer.json()["results"]} == {404}
    # However much refilled meanwhile, a bucket holds at most its burst: 3,000 operations leave
    # at most 2,000 of it (2,001 when the token the batch took on arrival had come back).
    assert int(answer.headers["RateLimit-Remaining"]) <= WRITER_BURST - 3_000 + 1
    assert answer.headers["RateLimit-Limit"] == str(WRITER_BURST)

    reserves = [{"op": "reserve", "lines": [{"sku": sku, "quantity": 1}]}] * (WRITER_BURST + 1)
    refused = http.post("/v1/batch", json={"operations": reserves}, headers=bearer(key))
    problem = assert_problem(refused, 429, "rate-limited")
    assert "split" in problem["detail"], problem
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Limit"] == str(WRITER_BURST)
    # Refused whole: not one of its reservations was made.
    assert sku_view(http, http_app, sku)["totals"] == {
        "on_hand": 10,
        "reserved": 0,
        "available": 10,
    }
