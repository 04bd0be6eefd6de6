"""A shard's process dies: its SKUs answer 503 shard-unavailable until Ray has restarted it and
it has recovered; the other shard's SKUs are served throughout."""

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field

import httpx
import pytest
import ray

from tests.http.conftest import HttpApp, assert_problem, bearer, stock

pytestmark = pytest.mark.ray

VICTIM, BYSTANDER = 0, 1
RECOVERY_TIMEOUT_SECONDS = 60.0
# Requests for the victim's SKUs in flight when it is killed, at least (4 are sent at a time).
VICTIM_IN_FLIGHT_MIN = 3


@dataclass
class Log:
    """(time sent, time answered, answer) of every request to one shard's SKUs."""

    answers: list[tuple[float, float, httpx.Response]] = field(default_factory=list)
    # Requests sent and not answered yet.
    in_flight: int = 0


async def _hammer(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    body: object,
    key: str,
    log: Log,
    done: asyncio.Event,
) -> None:
    while not done.is_set():
        sent = time.monotonic()
        log.in_flight += 1
        try:
            answer = await client.request(method, path, json=body, headers=bearer(key))
        finally:
            log.in_flight -= 1
        log.answers.append((sent, time.monotonic(), answer))
        await asyncio.sleep(0.005)


async def _outage(app: HttpApp, victim: str, bystander: str, pid: int) -> tuple[Log, Log, float]:
    victim_log, bystander_log = Log(), Log()
    done = asyncio.Event()
    reserve = {"lines": [{"sku": victim, "quantity": 1}]}
    other_reserve = {"lines": [{"sku": bystander, "quantity": 1}]}
    async with httpx.AsyncClient(base_url=app.base_url, timeout=60.0) as client:
        workers = [
            # Several requests in flight at any time, so some are caught by the kill itself.
            *(
                _hammer(client, "GET", f"/v1/skus/{victim}", None, app.admin_key, victim_log, done)
                for _ in range(3)
            ),
            _hammer(client, "POST", "/v1/reservations", reserve, app.writer_key, victim_log, done),
            _hammer(
                client, "GET", f"/v1/skus/{bystander}", None, app.admin_key, bystander_log, done
            ),
            _hammer(
                client,
                "POST",
                "/v1/reservations",
                other_reserve,
                app.writer_key,
                bystander_log,
                done,
            ),
        ]
        tasks = [asyncio.create_task(worker) for worker in workers]
        started = time.monotonic()
        # The kill must catch requests on their way to the shard (those fail with 503; Ray
        # holds the ones sent after the kill until the shard is back). Between two requests a
        # worker sleeps, so wait for a moment when most of them are out.
        while len(victim_log.answers) < 10 or victim_log.in_flight < VICTIM_IN_FLIGHT_MIN:
            assert time.monotonic() < started + RECOVERY_TIMEOUT_SECONDS, "no load"
            await asyncio.sleep(0.001)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        deadline = killed_at + RECOVERY_TIMEOUT_SECONDS
        while not _recovered(victim_log, killed_at):
            assert time.monotonic() < deadline, "the shard did not come back in time"
            await asyncio.sleep(0.02)
        done.set()
        await asyncio.gather(*tasks)
    return victim_log, bystander_log, killed_at


def _recovered(log: Log, killed_at: float) -> bool:
    """Some request sent after the kill failed, and a later one succeeded."""
    failed_at = [sent for sent, _, a in log.answers if sent >= killed_at and a.status_code == 503]
    return bool(failed_at) and any(
        sent > failed_at[0] and a.status_code < 300 for sent, _, a in log.answers
    )


def test_a_killed_shard_is_503_for_its_skus_only_until_it_recovers(
    http_app: HttpApp, http: httpx.Client
) -> None:
    victim, bystander = http_app.sku(shard=VICTIM), http_app.sku(shard=BYSTANDER)
    stock(http, http_app, victim, 1_000_000)
    stock(http, http_app, bystander, 1_000_000)
    before = ray.get(http_app.shard_actor(VICTIM).status.remote(), timeout=30)

    victim_log, bystander_log, killed_at = asyncio.run(
        _outage(http_app, victim, bystander, before.pid)
    )

    failures = [a for _, _, a in victim_log.answers if a.status_code >= 300]
    assert failures, "no request for the killed shard's SKUs failed"
    for answer in failures:
        problem = assert_problem(answer, 503, "shard-unavailable")
        assert problem["shard"] == VICTIM
        assert int(answer.headers["Retry-After"]) >= 1
    last_failure = max(done for _, done, a in victim_log.answers if a.status_code >= 300)
    during = [a for sent, _, a in bystander_log.answers if killed_at <= sent <= last_failure]
    assert during, "no request for the other shard's SKUs was made during the outage"
    assert all(a.status_code in (200, 201) for _, _, a in bystander_log.answers), [
        (a.status_code, a.text) for _, _, a in bystander_log.answers if a.status_code >= 300
    ]
    after = ray.get(http_app.shard_actor(VICTIM).status.remote(), timeout=30)
    assert after.pid != before.pid and after.available
    assert http.get(f"/v1/skus/{victim}", headers=bearer(http_app.admin_key)).status_code == 200
