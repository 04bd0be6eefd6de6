"""Per-key rate limits over HTTP: a burst over the reader limit (100/s, burst 100) is refused
with 429, and the key is served again once Retry-After has passed."""

import asyncio
import time

import httpx
import pytest

from serve_app.keys import Role
from tests.conftest import wait_for
from tests.http.conftest import HttpApp, assert_problem, bearer, stock

pytestmark = pytest.mark.ray

BURST = 100
WAVE = 250


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
