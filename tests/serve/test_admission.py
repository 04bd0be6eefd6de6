"""The admission gate: running slots, the line for them, shedding on a full or slow line, the
rate-limit check before any wait, and the Serve bounds that keep every request reaching it."""

import asyncio
import json
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send

from inventory_actors.cluster.client import InventoryClient
from serve_app.deployment import DEPLOYMENT_OPTIONS, app, serve_limits, settings_from
from serve_app.keys import KeyStore, Role
from serve_app.middleware.admission import Admission, AdmissionGate, AdmissionLimits
from serve_app.middleware.rate_limit import RateLimiter, RateLimits, RoleLimit
from serve_app.problems import Problem
from serve_app.service import Service, Settings, install_service


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def admission(**limits: Any) -> tuple[Admission, Clock]:
    clock = Clock()
    return Admission(AdmissionLimits(**limits), clock=clock), clock


# -- the slots and the line -------------------------------------------------------------------


def test_requests_run_up_to_the_bound_then_wait_in_line_first_come_first_served() -> None:
    async def scenario() -> None:
        gate, clock = admission(running_max=2, queued_max=5)
        assert gate.enter(clock()) is None and gate.enter(clock()) is None
        assert gate.running == 2
        first, second = gate.enter(clock()), gate.enter(clock())
        assert first is not None and second is not None and gate.waiting == 2
        clock.now += 0.25
        gate.leave()  # the slot goes to the first in line; as many run as before
        assert first.done() and not second.done()
        assert (gate.running, gate.waiting) == (2, 1)
        assert gate.stats.wait_max_seconds == pytest.approx(0.25)
        gate.leave()
        assert second.done() and gate.waiting == 0
        gate.leave()
        gate.leave()
        assert gate.running == 0
        assert (gate.stats.admitted, gate.stats.queued, gate.stats.shed) == (4, 2, 0)

    asyncio.run(scenario())


def test_an_arrival_waits_behind_others_even_when_a_slot_is_free() -> None:
    async def scenario() -> None:
        gate, clock = admission(running_max=1, queued_max=5)
        gate.enter(clock())
        waiting = gate.enter(clock())
        assert waiting is not None
        # Nobody may overtake the line, even in the instant a slot is being handed over.
        assert gate.shed_reason(clock()) is None
        assert gate.enter(clock()) is not None

    asyncio.run(scenario())


def test_arrivals_are_shed_when_the_line_is_full() -> None:
    async def scenario() -> None:
        gate, clock = admission(running_max=1, queued_max=2)
        assert gate.shed_reason(clock()) is None
        gate.enter(clock())
        assert gate.shed_reason(clock()) is None
        gate.enter(clock())
        gate.enter(clock())
        reason = gate.shed_reason(clock())
        assert reason == "1 requests run and 2 wait in this replica"
        problem = gate.shed(reason)
        assert (problem.status, problem.slug) == (503, "overloaded")
        assert problem.headers == {"Retry-After": "1"}
        assert gate.stats.shed == 1

    asyncio.run(scenario())


def test_arrivals_are_shed_while_the_line_does_not_move() -> None:
    async def scenario() -> None:
        gate, clock = admission(running_max=1, queued_max=100, queue_wait_max_seconds=0.5)
        gate.enter(clock())
        gate.enter(clock())
        clock.now += 0.5
        assert gate.shed_reason(clock()) is None
        clock.now += 0.01
        assert (
            gate.shed_reason(clock()) == "requests wait 0.5 s for this replica, longer than 0.5 s"
        )
        gate.leave()  # the line moves: the one who waited runs, and arrivals may wait again
        assert gate.shed_reason(clock()) is None

    asyncio.run(scenario())


def test_without_a_line_an_arrival_is_shed_when_every_slot_runs() -> None:
    async def scenario() -> None:
        gate, clock = admission(running_max=1, queued_max=0)
        gate.enter(clock())
        assert gate.shed_reason(clock()) is not None
        gate.leave()
        assert gate.shed_reason(clock()) is None

    asyncio.run(scenario())


def test_a_request_that_leaves_the_line_is_forgotten_and_a_handed_slot_passes_on() -> None:
    async def scenario() -> None:
        gate, clock = admission(running_max=1, queued_max=5)
        gate.enter(clock())
        gone, handed, next_one = gate.enter(clock()), gate.enter(clock()), gate.enter(clock())
        assert gone is not None and handed is not None and next_one is not None
        gate.abandon(gone)  # still waiting: out of line
        assert gone.cancelled() and gate.waiting == 2
        gate.leave()  # the slot goes to `handed`...
        assert handed.done() and gate.running == 1
        gate.abandon(handed)  # ...which went away before it ran: on to the next
        assert next_one.done() and gate.waiting == 0 and gate.running == 1
        gate.leave()
        assert gate.running == 0

    asyncio.run(scenario())


def test_disabled_admission_runs_everything_at_once() -> None:
    async def scenario() -> None:
        gate = Admission(AdmissionLimits.disabled())
        for _ in range(1_000):
            assert gate.shed_reason(0.0) is None
            assert gate.enter(0.0) is None
        assert gate.running == 1_000

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "limits",
    [
        {"running_max": 0},
        {"queued_max": -1},
        {"queue_wait_max_seconds": 0.0},
        {"retry_after_seconds": 0},
    ],
)
def test_limits_out_of_range_are_refused(limits: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AdmissionLimits(**limits)


# -- the gate, as ASGI ---------------------------------------------------------------------


class FakeService:
    def __init__(self, limits: AdmissionLimits, refuse: set[str] | None = None) -> None:
        self.admission = Admission(limits)
        self.refuse = refuse or set()
        self.checked: list[str | None] = []
        self.refunded = 0

    def rate_check(self, authorization: str | None) -> Problem | None:
        self.checked.append(authorization)
        if authorization in self.refuse:
            return Problem("rate-limited", 429, "slow down", retry_after_seconds=2)
        return None

    def rate_refund(self) -> None:
        self.refunded += 1


class Held:
    """A downstream app whose requests run until released, or fail if told to."""

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.started += 1
        await self.release.wait()
        if scope["path"] == "/fails":
            raise RuntimeError("the route failed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(
    gate: AdmissionGate,
    path: str = "/v1/reservations",
    key: str | None = "Bearer k",
    root_path: str = "",
) -> list[Message]:
    headers = [] if key is None else [(b"authorization", key.encode())]
    scope = {"type": "http", "method": "POST", "path": root_path + path, "headers": headers}
    scope["root_path"] = root_path
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await gate(scope, receive, send)
    return sent


def answer(sent: list[Message]) -> tuple[int, dict[str, str], Any]:
    start, body = sent[0], b"".join(m.get("body", b"") for m in sent[1:])
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    try:
        parsed: Any = json.loads(body)
    except ValueError:
        parsed = body
    return start["status"], headers, parsed


def test_the_gate_sheds_excess_at_once_with_a_problem_and_retry_after() -> None:
    async def scenario() -> None:
        downstream = Held()
        service = FakeService(AdmissionLimits(running_max=2, queued_max=3))
        gate = AdmissionGate(downstream, lambda: service)
        admitted = [asyncio.create_task(call(gate)) for _ in range(5)]
        await asyncio.sleep(0)
        assert downstream.started == 2 and service.admission.waiting == 3
        status, headers, body = answer(await asyncio.wait_for(call(gate), timeout=1.0))
        assert status == 503 and headers["retry-after"] == "1"
        assert headers["content-type"] == "application/problem+json"
        assert body["type"] == "/problems/overloaded" and body["status"] == 503
        # The shed request's rate-limit token was given back.
        assert (len(service.checked), service.refunded) == (6, 1)
        downstream.release.set()
        for task in admitted:
            assert answer(await task)[0] == 200
        assert service.admission.running == 0

    asyncio.run(scenario())


def test_a_key_over_its_limit_hears_429_at_once_even_while_others_wait() -> None:
    async def scenario() -> None:
        downstream = Held()
        service = FakeService(AdmissionLimits(running_max=1), refuse={"Bearer greedy"})
        gate = AdmissionGate(downstream, lambda: service)
        running = asyncio.create_task(call(gate))
        waiting = asyncio.create_task(call(gate))
        await asyncio.sleep(0)
        status, headers, body = answer(await asyncio.wait_for(call(gate, key="Bearer greedy"), 1))
        assert (status, headers["retry-after"], body["type"]) == (
            429,
            "2",
            "/problems/rate-limited",
        )
        assert service.admission.waiting == 1  # the refused request took no place in line
        downstream.release.set()
        await running
        await waiting

    asyncio.run(scenario())


def test_health_routes_pass_and_the_event_stream_takes_no_slot() -> None:
    async def scenario() -> None:
        downstream = Held()
        service = FakeService(AdmissionLimits(running_max=1, queued_max=0))
        gate = AdmissionGate(downstream, lambda: service)
        busy = asyncio.create_task(call(gate))
        await asyncio.sleep(0)
        probes = [asyncio.create_task(call(gate, path, None)) for path in ("/healthz", "/readyz")]
        # An app under a route prefix sees it as the root path.
        probes.append(asyncio.create_task(call(gate, "/healthz", None, root_path="/spike")))
        stream = asyncio.create_task(call(gate, "/v1/events/stream"))
        await asyncio.sleep(0)
        assert downstream.started == 5  # all ran although the one slot is taken
        assert service.checked == ["Bearer k", "Bearer k"]  # the probes carry no key
        downstream.release.set()
        for task in [busy, *probes, stream]:
            assert answer(await task)[0] == 200
        assert service.admission.running == 0

    asyncio.run(scenario())


def test_a_failing_or_cancelled_request_gives_its_slot_back() -> None:
    async def scenario() -> None:
        downstream = Held()
        service = FakeService(AdmissionLimits(running_max=1, queued_max=5))
        gate = AdmissionGate(downstream, lambda: service)
        failing = asyncio.create_task(call(gate, "/fails"))
        await asyncio.sleep(0)
        gone = asyncio.create_task(call(gate))
        later = asyncio.create_task(call(gate))
        await asyncio.sleep(0)
        gone.cancel()  # its client disconnected while it waited
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert service.admission.waiting == 1
        downstream.release.set()
        with pytest.raises(RuntimeError):
            await failing
        assert answer(await later)[0] == 200
        assert (service.admission.running, service.admission.waiting) == (0, 0)

    asyncio.run(scenario())


# -- the service's rate check and the Serve bounds ----------------------------------------


class NoReservations:
    async def call_shard(self, *args: Any) -> list[Any]:
        raise AssertionError("no command is sent here")

    async def get_hold_async(self, hold_id: str) -> None:
        return None


def test_the_rate_check_charges_a_request_once(tmp_path: Path) -> None:
    keys = KeyStore.open(tmp_path)
    _, key = keys.create(Role.WRITER)
    limits = RateLimits(writer=RoleLimit(per_second=0.001, burst=2))
    settings = Settings(rate_limits=limits)
    install_service(
        Service(settings, cast(InventoryClient, NoReservations()), keys, RateLimiter(limits))
    )
    with TestClient(app) as http:
        auth = {"Authorization": f"Bearer {key}"}
        statuses = [http.get("/v1/reservations/r_none", headers=auth) for _ in range(3)]
    # The burst of two serves two requests (each charged once, at the gate), then 429.
    assert [a.status_code for a in statuses] == [404, 404, 429]
    assert statuses[1].headers["RateLimit-Remaining"] == "0"
    assert statuses[0].headers["RateLimit-Remaining"] == "1"
    refused = statuses[2]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["Retry-After"] and refused.json()["type"] == "/problems/rate-limited"


def test_serve_lets_every_request_reach_the_gate() -> None:
    limits = AdmissionLimits()
    options = serve_limits(limits)
    assert options["max_ongoing_requests"] > limits.running_max + limits.queued_max
    assert options["backpressure_config"] == {"status_code": 503, "retry_after_s": 1.0}
    for name in ("max_ongoing_requests", "max_queued_requests", "backpressure_config"):
        assert DEPLOYMENT_OPTIONS[name] == options[name]
    autoscaling = DEPLOYMENT_OPTIONS["autoscaling_config"]
    assert autoscaling["target_ongoing_requests"] <= limits.running_max


def test_a_serve_config_can_set_the_admission_limits() -> None:
    settings = settings_from(
        {"data_dir": "/data", "admission": {"running_max": 32, "queue_wait_max_seconds": 0.5}}
    )
    assert settings.admission == AdmissionLimits(running_max=32, queue_wait_max_seconds=0.5)


def test_a_shed_request_is_not_charged_to_its_key(tmp_path: Path) -> None:
    keys = KeyStore.open(tmp_path)
    _, key = keys.create(Role.WRITER)
    limits = RateLimits(writer=RoleLimit(per_second=0.001, burst=2))
    admission = AdmissionLimits(running_max=1, queued_max=0)
    settings = Settings(rate_limits=limits, admission=admission)
    service = Service(settings, cast(InventoryClient, NoReservations()), keys, RateLimiter(limits))
    install_service(service)
    with TestClient(app) as http:
        auth = {"Authorization": f"Bearer {key}"}
        assert service.admission.enter(0.0) is None  # the one slot, held from here
        shed = [http.get("/v1/reservations/r_none", headers=auth) for _ in range(5)]
        assert [a.status_code for a in shed] == [503] * 5
        assert shed[0].json()["type"] == "/problems/overloaded"
        service.admission.leave()
        served = http.get("/v1/reservations/r_none", headers=auth)
    assert served.status_code == 404
    assert served.headers["RateLimit-Remaining"] == "1"  # only the served request was charged


def test_given_back_tokens_never_overfill_a_bucket() -> None:
    limiter = RateLimiter(RateLimits(writer=RoleLimit(per_second=1.0, burst=3)))
    assert limiter.take("k", Role.WRITER, now_s=0.0).remaining == 2
    limiter.give_back("k", Role.WRITER)
    limiter.give_back("k", Role.WRITER)
    limiter.give_back("unknown", Role.WRITER)  # no bucket: nothing to give back to
    assert limiter.take("k", Role.WRITER, now_s=0.0).remaining == 2
