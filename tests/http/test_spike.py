"""A 10x spike over HTTP, open loop (bench/spike.py's generator), against a real Serve app: what
the replica cannot take at once is refused at once (429 or 503, problem+json, Retry-After,
answered within 100 ms at p99), what it accepts is answered within a bounded time and is all
there afterwards, and nothing else goes wrong.

The apps are this module's own Serve applications (own route prefixes; shards and keys shared
between them) beside the session's, each with limits that a spike from 10 to 100 requests a
second (well within what one replica ingests on a two-core machine that also runs the whole
session's cluster) meets whatever the machine's speed:
- `limited`: the default admission control, a writer key limited to 20/s;
- `small`: no practical rate limit, but a replica that runs 1 request at once and lets at most
  1 wait, none longer than 0.25 s, met by reservations of 4 lines over both shards. Such a
  reservation alone takes about 8 ms on an idle two-core machine, so 100/s, evenly spaced, may
  fit in the one slot; the test first times lone reservations and spikes to 2.5 times what one
  slot serves (at least 10 to 100/s, at most 40 to 400/s).
The gate's logic is the same at any size; S7 of the benchmark suite runs the defaults at
1,000/s."""

import asyncio
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from ray import serve

from bench.spike import ReservationLoad, SpikeResult, run_in_child
from inventory_actors.cluster.client import InventoryClient
from serve_app.deployment import DEPLOYMENT_NAME, deployment_for
from serve_app.keys import KeyStore, Role
from serve_app.middleware.admission import AdmissionLimits
from serve_app.middleware.rate_limit import RateLimits, RoleLimit
from serve_app.service import Settings
from tests.conftest import wait_for
from tests.http.conftest import HttpApp, bearer

pytestmark = pytest.mark.ray

SHARDS = 2
WRITER_PER_SECOND = 20
SMALL = AdmissionLimits(running_max=1, queued_max=1, queue_wait_max_seconds=0.25)
# Lines per reservation in the spike on the small app.
SMALL_LINES = 4
# The load: `STEADY_RPS` for `PHASE_SECONDS`, ten times that, then steady again.
STEADY_RPS = 10.0
FACTOR = 10.0
PHASE_SECONDS = 2.0
# The small app's spike offers this many times what its one slot serves, with the steady rate
# at most this (the spike at most ten times it).
SMALL_OVERLOAD = 2.5
SMALL_STEADY_RPS_MAX = 40.0
# Lone reservations timed to learn what the small app's one slot serves.
SMALL_PROBES = 20
# The bound for refusals.
REJECTED_P99_MS = 100.0
# Accepted requests: a spike at ten times the steady rate may not slow them past a second
# (the small app's line holds at most 0.25 s of waiting, then one shard call; the limited
# app's key takes 20/s, far below what the replica serves).
ACCEPTED_P99_MS = 1_000.0
ON_HAND = 1_000_000


@dataclass(frozen=True)
class SpikeApp:
    url: str
    admin_key: str
    writer_key: str
    settings: Settings


@dataclass(frozen=True)
class Stack:
    """Shards and keys the module's apps share, and how to put an app in front of them."""

    base_url: str
    admin_key: str
    writer_key: str
    settings: Settings

    def deploy(self, name: str, settings: Settings, **options: Any) -> SpikeApp:
        deployment = deployment_for(settings, **options)
        prefix = f"/{name}"
        serve.run(deployment.bind(settings), name=name, route_prefix=prefix)
        url = f"{self.base_url}{prefix}"
        wait_for(
            lambda: httpx.get(f"{url}/readyz", timeout=5.0).status_code == 200,
            120,
            f"{url} to be ready",
        )
        return SpikeApp(url, self.admin_key, self.writer_key, settings)


@pytest.fixture(scope="module")
def stack(http_app: HttpApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """On the session's Serve (so on its port), beside its app."""
    data_dir: Path = tmp_path_factory.mktemp("spike")
    namespace = f"spike-{uuid.uuid4().hex[:12]}"
    store = KeyStore.open(data_dir)
    created = store.initialize()
    assert created is not None
    writer_key = store.create(Role.WRITER)[1]
    shards = InventoryClient.connect(data_dir, shard_count=SHARDS, namespace=namespace)
    settings = Settings(data_dir=str(data_dir), shards=SHARDS, namespace=namespace)
    try:
        yield Stack(http_app.base_url, created[1], writer_key, settings)
    finally:
        shards.shutdown()


def _app(stack: Stack, name: str, **changes: Any) -> Iterator[SpikeApp]:
    try:
        settings = replace(stack.settings, **changes)
        yield stack.deploy(name, settings, num_replicas=1, autoscaling_config=None)
    finally:
        serve.delete(name)


@pytest.fixture(scope="module")
def limited(stack: Stack) -> Iterator[SpikeApp]:
    limits = RateLimits(writer=RoleLimit(WRITER_PER_SECOND, WRITER_PER_SECOND))
    yield from _app(stack, "spike-limited", rate_limits=limits)


@pytest.fixture(scope="module")
def small(stack: Stack) -> Iterator[SpikeApp]:
    limits = RateLimits(admin=RoleLimit(100_000, 100_000))
    yield from _app(stack, "spike-small", rate_limits=limits, admission=SMALL)


def _stocked(app: SpikeApp, count: int = 20) -> list[str]:
    skus = [f"S-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    ops = [
        {"op": "adjust", "sku": sku, "location": "L1", "delta": ON_HAND, "reason": "received"}
        for sku in skus
    ]
    answer = httpx.post(
        f"{app.url}/v1/batch",
        json={"operations": ops},
        headers=bearer(app.admin_key),
        timeout=60.0,
    )
    assert answer.status_code == 200, answer.text
    assert {r["status"] for r in answer.json()["results"]} == {200}
    return skus


def _spike(
    app: SpikeApp, key: str, skus: list[str], lines: int = 1, steady_rps: float = STEADY_RPS
) -> SpikeResult:
    load = ReservationLoad(
        f"{app.url}/v1/reservations",
        bearer(key),
        skus,
        steady_rps=steady_rps,
        factor=FACTOR,
        phase_seconds=PHASE_SECONDS,
        keep_bodies=True,
        lines=lines,
    )
    return run_in_child(load)


def _small_steady_rps(app: SpikeApp, lines: int) -> float:
    """A steady rate whose tenfold spike offers `SMALL_OVERLOAD` times what the app's one slot
    serves: timed on lone reservations (their median), of SKUs of their own."""
    load = ReservationLoad(f"{app.url}/v1/reservations", {}, _stocked(app), 0.0, lines=lines)
    seconds = []
    with httpx.Client(headers=bearer(app.admin_key), timeout=30.0) as client:
        for index in range(SMALL_PROBES):
            answer = client.post(load.url, json=load.body_of(index))
            assert answer.status_code == 201, answer.text
            seconds.append(answer.elapsed.total_seconds())
    slot_rps = 1.0 / sorted(seconds)[len(seconds) // 2]
    return min(SMALL_STEADY_RPS_MAX, max(STEADY_RPS, SMALL_OVERLOAD * slot_rps / FACTOR))


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0


def _check_answers(result: SpikeResult) -> tuple[list[str], list[int]]:
    """The properties every spike must have; the accepted reservations' ids, and the statuses
    of the refusals."""
    summary = json.dumps(result.summary())
    print(summary)  # the figures, for `pytest -s`
    # Nothing but created, rate-limited or overloaded: no 5xx but 503, no connection lost.
    assert {a.status for a in result.answers} <= {201, 429, 503}, summary
    assert result.dropped == 0, summary
    refused = [a for a in result.answers if a.status in (429, 503)]
    assert all(a.retry_after and a.problem for a in refused), summary
    assert _p99([a.seconds * 1e3 for a in refused]) <= REJECTED_P99_MS, summary
    accepted = [a for a in result.answers if a.status == 201]
    assert accepted, summary
    assert _p99([a.seconds * 1e3 for a in accepted]) <= ACCEPTED_P99_MS, summary
    ids = [json.loads(a.body)["reservation_id"] for a in accepted]
    assert len(set(ids)) == len(ids)
    return ids, [a.status for a in refused]


async def _fetch_all(app: SpikeApp, ids: list[str]) -> list[httpx.Response]:
    # No more at once than the app runs: these reads must not be shed themselves.
    at_once = min(16, app.settings.admission.running_max)
    limits = httpx.Limits(max_connections=at_once)
    async with httpx.AsyncClient(base_url=app.url, timeout=30.0, limits=limits) as client:
        gate = asyncio.Semaphore(at_once)

        async def one(hold_id: str) -> httpx.Response:
            async with gate:
                return await client.get(
                    f"/v1/reservations/{hold_id}", headers=bearer(app.admin_key)
                )

        return list(await asyncio.gather(*(one(hold_id) for hold_id in ids)))


def _check_all_there(app: SpikeApp, ids: list[str], skus: list[str], lines: int = 1) -> None:
    """Every acknowledged reservation (of `lines` units) exists, and nothing beyond them was
    reserved."""
    answers = asyncio.run(_fetch_all(app, ids))
    assert [a.status_code for a in answers] == [200] * len(ids)
    assert {a.json()["status"] for a in answers} == {"active"}
    reserved = 0
    for sku in skus:
        view = httpx.get(f"{app.url}/v1/skus/{sku}", headers=bearer(app.admin_key), timeout=30)
        reserved += view.json()["totals"]["reserved"]
    assert reserved == len(ids) * lines


def test_a_spike_over_a_keys_rate_is_refused_at_once_and_loses_nothing(
    limited: SpikeApp,
) -> None:
    skus = _stocked(limited)
    result = _spike(limited, limited.writer_key, skus)
    ids, refused = _check_answers(result)
    # The key's limit held: what the spike sent beyond its burst and rate was refused, as
    # rate-limited (all but a margin for the generator's own timing).
    beyond = PHASE_SECONDS * (STEADY_RPS * FACTOR - WRITER_PER_SECOND) - WRITER_PER_SECOND
    assert refused.count(429) >= 0.8 * beyond, result.summary()
    _check_all_there(limited, ids, skus)


def test_a_spike_over_the_replicas_capacity_is_shed_at_once_and_loses_nothing(
    small: SpikeApp,
) -> None:
    steady_rps = _small_steady_rps(small, SMALL_LINES)
    skus = _stocked(small)
    result = _spike(small, small.admin_key, skus, SMALL_LINES, steady_rps)
    ids, refused = _check_answers(result)
    assert refused.count(503) > 0, result.summary()
    _check_all_there(small, ids, skus, SMALL_LINES)
    # The replica came through it: ready, and serving the steady rate again.
    assert httpx.get(f"{small.url}/readyz", timeout=5.0).status_code == 200


def _running_replicas(app_name: str) -> int:
    status = serve.status().applications[app_name].deployments[DEPLOYMENT_NAME]
    return sum(n for state, n in status.replica_states.items() if state == "RUNNING")


def _watch(condition: Callable[[], int], seen: list[int], done: threading.Event) -> None:
    while not done.wait(0.5):
        seen.append(condition())


def test_a_sustained_spike_scales_replicas_out_and_back_in(stack: Stack) -> None:
    """Autoscaling from one replica to two and back, with short delays (so the test waits
    seconds rather than the deployment's minute) and small replicas (a tenth of a CPU: the
    session's Ray has two CPUs for every app and shard)."""
    name = "spike-autoscale"
    autoscaling = {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 1,
        "upscale_delay_s": 1.0,
        "downscale_delay_s": 5.0,
        "metrics_interval_s": 0.5,
        "look_back_period_s": 2.0,
    }
    settings = replace(stack.settings, admission=SMALL)
    try:
        app = stack.deploy(
            name,
            settings,
            autoscaling_config=autoscaling,
            ray_actor_options={"num_cpus": 0.1},
        )
        skus = _stocked(app)
        assert _running_replicas(name) == 1
        seen: list[int] = [1]
        done = threading.Event()
        watcher = threading.Thread(
            target=_watch, args=(lambda: _running_replicas(name), seen, done)
        )
        watcher.start()
        load = ReservationLoad(
            f"{app.url}/v1/reservations", bearer(app.admin_key), skus, 30.0, phase_seconds=10.0
        )
        try:
            result = run_in_child(load)
        finally:
            done.set()
            watcher.join()
        assert max(seen) == 2, f"no second replica during 10 s of 300 requests/s: {seen}"
        assert {a.status for a in result.answers} <= {201, 429, 503}, result.summary()
        wait_for(lambda: _running_replicas(name) == 1, 60, "the scale back to one replica")
    finally:
        serve.delete(name)
