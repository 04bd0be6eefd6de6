"""A shard's process dies: until Ray has restarted it, a request for its SKUs is either served
or answered 503 shard-unavailable, never anything else; the other shard's SKUs are served
throughout; and the shard serves its SKUs again within a bound."""

import asyncio
import os
import signal
import time
from dataclasses import dataclass, field

import httpx
import pytest
import ray

from tests.conftest import poll
from tests.http.conftest import HttpApp, assert_problem, bearer, stock

pytestmark = pytest.mark.ray

VICTIM, BYSTANDER = 0, 1
# A restart is a process start plus the recovery of the shard's file: seconds (docs/deploy.md).
# The bound leaves room for a whole suite running on two cores beside it.
RECOVERY_TIMEOUT_SECONDS = 60.0
LOAD_TIMEOUT_SECONDS = 60.0
# Requests for the victim's SKUs in flight when it is killed, at least (4 are sent at a time).
# The more the kill catches, the more answers to a request cut off by the kill the test sees;
# but Ray may hold any of them until the restarted shard answers, so none has to fail.
VICTIM_IN_FLIGHT_MIN = 3
SERVED = frozenset({200, 201})


@dataclass(frozen=True)
class Answer:
    """One request to a shard's SKUs: when it was sent and answered, and the answer (or the
    transport error that came instead)."""

    sent: float
    answered: float
    response: httpx.Response | None
    error: str | None = None

    @property
    def served(self) -> bool:
        return self.response is not None and self.response.status_code in SERVED

    def describe(self) -> str:
        if self.response is None:
            return f"no answer: {self.error}"
        return f"{self.response.status_code} {self.response.text[:300]}"


@dataclass
class Log:
    """Every request to one shard's SKUs, in the order they were answered."""

    answers: list[Answer] = field(default_factory=list)
    # Requests sent and not answered yet.
    in_flight: int = 0

    def served_since(self, moment: float, start: int = 0) -> Answer | None:
        """The first answer from `start` on that served a request sent at `moment` or later."""
        return next((a for a in self.answers[start:] if a.sent >= moment and a.served), None)


@dataclass(frozen=True)
class Outage:
    victim: Log
    bystander: Log
    killed_at: float
    # The first request for the victim's SKUs sent after the kill that was served.
    back: Answer


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
            response = await client.request(method, path, json=body, headers=bearer(key))
        except httpx.HTTPError as error:
            log.answers.append(Answer(sent, time.monotonic(), None, repr(error)))
        else:
            log.answers.append(Answer(sent, time.monotonic(), response))
        finally:
            log.in_flight -= 1
        await asyncio.sleep(0.005)


async def _outage(app: HttpApp, victim: str, bystander: str, pid: int) -> Outage:
    victim_log, bystander_log = Log(), Log()
    done = asyncio.Event()
    reserve = {"lines": [{"sku": victim, "quantity": 1}]}
    other_reserve = {"lines": [{"sku": bystander, "quantity": 1}]}
    async with httpx.AsyncClient(base_url=app.base_url, timeout=60.0) as client:
        workers = [
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
        try:
            await poll(
                lambda: (
                    len(victim_log.answers) >= 10 and victim_log.in_flight >= VICTIM_IN_FLIGHT_MIN
                ),
                f"{VICTIM_IN_FLIGHT_MIN} requests for the victim's SKUs in flight at once",
                LOAD_TIMEOUT_SECONDS,
            )
            # Answers logged from here on may be to requests sent before the kill, which the
            # old process may have served; only a request sent after it shows the new one serves.
            start = len(victim_log.answers)
            killed_at = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            back = await poll(
                lambda: victim_log.served_since(killed_at, start),
                "the killed shard to serve its SKUs again",
                RECOVERY_TIMEOUT_SECONDS,
            )
        finally:
            done.set()
            await asyncio.gather(*tasks)
    return Outage(victim_log, bystander_log, killed_at, back)


def test_a_killed_shard_is_503_for_its_skus_only_until_it_recovers(
    http_app: HttpApp, http: httpx.Client
) -> None:
    victim, bystander = http_app.sku(shard=VICTIM), http_app.sku(shard=BYSTANDER)
    stock(http, http_app, victim, 1_000_000)
    stock(http, http_app, bystander, 1_000_000)
    before = ray.get(http_app.shard_actor(VICTIM).status.remote(), timeout=30)

    outage = asyncio.run(_outage(http_app, victim, bystander, before.pid))

    # Served, or refused as the contract says: a request the kill cut off, or one that waited
    # for the restart longer than the replica waits for a shard.
    for answer in outage.victim.answers:
        if answer.served:
            continue
        assert answer.response is not None, answer.describe()
        problem = assert_problem(answer.response, 503, "shard-unavailable")
        assert problem["shard"] == VICTIM, problem
        assert int(answer.response.headers["Retry-After"]) >= 1, answer.response.headers
    assert all(a.served for a in outage.bystander.answers), [
        a.describe() for a in outage.bystander.answers if not a.served
    ]
    # The other shard was served while this one was down, not held until it came back.
    during = [
        a
        for a in outage.bystander.answers
        if outage.killed_at <= a.sent and a.answered <= outage.back.answered
    ]
    assert during, "no request for the other shard's SKUs was answered during the outage"
    after = ray.get(http_app.shard_actor(VICTIM).status.remote(), timeout=30)
    assert after.pid != before.pid and after.available
    assert http.get(f"/v1/skus/{victim}", headers=bearer(http_app.admin_key)).status_code == 200
