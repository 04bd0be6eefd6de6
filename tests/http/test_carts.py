"""Carts whose lines live on different shards, over real HTTP: all or nothing, races decided
once, a keyed cart answered 503 placed by its retry, and a Serve replica killed mid-cart leaves
nothing half done."""

import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil
import pytest
import ray

from inventory_actors.domain import HoldStatus, HoldView
from tests.conftest import wait_for
from tests.http.conftest import HttpApp, assert_problem, bearer, sku_view, stock

pytestmark = pytest.mark.ray

PENDING_LEASE_SECONDS = 10.0
# Serve notices a dead replica, starts another and routes to it: seconds, more under load.
REPLICA_RESTART_TIMEOUT_SECONDS = 120.0
# Carts of the replica-kill test outlive it however slowly it runs: its checks count the units of
# the carts still active, and one that expired midway would change the totals they compare.
CART_TTL_SECONDS = 3_600


def cart_skus(app: HttpApp, per_shard: int = 1) -> list[str]:
    return [app.sku(shard=shard) for shard in (0, 1) for _ in range(per_shard)]


def reserve(
    http: httpx.Client, app: HttpApp, lines: list[tuple[str, int]], **extra: Any
) -> httpx.Response:
    body = {"lines": [{"sku": sku, "quantity": q} for sku, q in lines]} | extra
    return http.post("/v1/reservations", json=body, headers=bearer(app.writer_key))


def totals(http: httpx.Client, app: HttpApp, sku: str) -> tuple[int, int]:
    view = sku_view(http, app, sku)["totals"]
    return view["on_hand"], view["reserved"]


def test_a_cart_across_shards_is_held_everywhere_then_committed_everywhere(
    http_app: HttpApp, http: httpx.Client
) -> None:
    skus = cart_skus(http_app)
    for sku in skus:
        stock(http, http_app, sku, 5)
    placed = reserve(http, http_app, [(skus[0], 2), (skus[1], 3)], reference="order-1")
    assert placed.status_code == 201, placed.text
    body = placed.json()
    assert body["status"] == "active" and body["reference"] == "order-1"
    assert sorted((line["sku"], line["quantity"]) for line in body["lines"]) == sorted(
        [(skus[0], 2), (skus[1], 3)]
    )
    assert [totals(http, http_app, sku) for sku in skus] == [(5, 2), (5, 3)]
    rid = body["reservation_id"]
    got = http.get(f"/v1/reservations/{rid}", headers=bearer(http_app.reader_key))
    assert got.status_code == 200 and got.json()["status"] == "active"
    committed = http.post(f"/v1/reservations/{rid}/commit", headers=bearer(http_app.writer_key))
    assert committed.status_code == 200 and committed.json()["status"] == "committed"
    wait_for(
        lambda: [totals(http, http_app, sku) for sku in skus] == [(3, 0), (2, 0)],
        10,
        "both shards to apply the commit",
    )
    again = http.post(f"/v1/reservations/{rid}/commit", headers=bearer(http_app.writer_key))
    assert again.status_code == 200 and again.json()["status"] == "committed"
    assert [totals(http, http_app, sku) for sku in skus] == [(3, 0), (2, 0)]


def test_a_short_line_on_one_shard_holds_nothing_on_any(
    http_app: HttpApp, http: httpx.Client
) -> None:
    skus = cart_skus(http_app)
    stock(http, http_app, skus[0], 5)
    stock(http, http_app, skus[1], 1)
    problem = assert_problem(
        reserve(http, http_app, [(skus[0], 2), (skus[1], 2)]), 409, "insufficient-stock"
    )
    assert [line["sku"] for line in problem["lines"]] == [skus[1]]
    wait_for(
        lambda: [totals(http, http_app, sku) for sku in skus] == [(5, 0), (1, 0)],
        10,
        "the held line on the other shard to be released",
    )


def test_two_lines_of_one_sku_cannot_take_more_than_is_available(
    http_app: HttpApp, http: httpx.Client
) -> None:
    sku, other = cart_skus(http_app)
    stock(http, http_app, sku, 3)
    stock(http, http_app, other, 3)
    answer = reserve(http, http_app, [(sku, 2), (other, 1), (sku, 2)])
    assert_problem(answer, 409, "insufficient-stock")
    wait_for(
        lambda: [totals(http, http_app, s) for s in (sku, other)] == [(3, 0), (3, 0)],
        10,
        "nothing held",
    )
    assert reserve(http, http_app, [(sku, 2), (other, 1), (sku, 1)]).status_code == 201
    assert totals(http, http_app, sku) == (3, 3)


def test_commit_racing_release_is_decided_once(http_app: HttpApp, http: httpx.Client) -> None:
    skus = cart_skus(http_app)
    rounds = 8
    for sku in skus:
        stock(http, http_app, sku, rounds)
    commits = 0
    writer = bearer(http_app.writer_key)
    with ThreadPoolExecutor(2) as pool:
        for _ in range(rounds):
            placed = reserve(http, http_app, [(skus[0], 1), (skus[1], 1)])
            assert placed.status_code == 201, placed.text
            rid = placed.json()["reservation_id"]
            paths = [f"/v1/reservations/{rid}/{action}" for action in ("commit", "release")]
            answers = list(pool.map(lambda path: http.post(path, headers=writer), paths))
            codes = sorted(answer.status_code for answer in answers)
            assert codes == [200, 409], [a.text for a in answers]
            loser = next(a for a in answers if a.status_code == 409)
            assert_problem(loser, 409, "reservation-not-active")
            winner = next(a for a in answers if a.status_code == 200).json()["status"]
            commits += winner == "committed"
    expected = [(rounds - commits, 0)] * 2
    wait_for(
        lambda: [totals(http, http_app, sku) for sku in skus] == expected,
        10,
        "every decision applied once on both shards",
    )


def test_commit_racing_expiry_is_decided_once(http_app: HttpApp, http: httpx.Client) -> None:
    skus = cart_skus(http_app)
    rounds = 6
    for sku in skus:
        stock(http, http_app, sku, rounds)
    commits = 0
    for index in range(rounds):
        placed = reserve(http, http_app, [(skus[0], 1), (skus[1], 1)], ttl_seconds=1)
        assert placed.status_code == 201, placed.text
        rid = placed.json()["reservation_id"]
        # Commit around the deadline: a little before, at, or a little after it.
        time.sleep(0.85 + 0.05 * index)
        answer = http.post(f"/v1/reservations/{rid}/commit", headers=bearer(http_app.writer_key))
        final = http.get(f"/v1/reservations/{rid}", headers=bearer(http_app.reader_key))
        if answer.status_code == 200:
            commits += 1
            assert final.json()["status"] == "committed"
        else:
            assert_problem(answer, 409, "reservation-not-active")
            assert final.json()["status"] == "expired"
    expected = [(rounds - commits, 0)] * 2
    wait_for(
        lambda: [totals(http, http_app, sku) for sku in skus] == expected,
        10,
        "each cart committed or expired, once, on both shards",
    )


def test_a_batch_places_carts_across_shards_beside_one_shard_holds(
    http_app: HttpApp, http: httpx.Client
) -> None:
    skus = cart_skus(http_app)
    for sku in skus:
        stock(http, http_app, sku, 4)
    both = [{"sku": sku, "quantity": 1} for sku in skus]
    operations = [
        {"op": "reserve", "lines": both},
        {"op": "reserve", "lines": [{"sku": skus[1], "quantity": 2}]},
        {"op": "reserve", "lines": [{"sku": skus[0], "quantity": 9}, both[1]]},
    ]
    answer = http.post(
        "/v1/batch", json={"operations": operations}, headers=bearer(http_app.writer_key)
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [201, 201, 409], results
    assert len(results[0]["body"]["lines"]) == 2
    wait_for(
        lambda: [totals(http, http_app, sku) for sku in skus] == [(4, 1), (4, 3)],
        10,
        "the short cart to hold nothing",
    )


# -- a keyed cart retried after a 503 -------------------------------------------------------------

# A client asks again while answers are temporary: bounded by a replica's restart, under load.
TEMPORARY_ANSWERS_TIMEOUT_SECONDS = 120.0


def not_temporary(ask: Callable[[], httpx.Response]) -> httpx.Response:
    """Ask until the answer is not a temporary one: none (a replica restarting), 429 or 5xx,
    which a client meets by asking again with the same key."""

    def answer() -> httpx.Response | None:
        response = ask()
        return response if response.status_code != 429 and response.status_code < 500 else None

    return wait_for(answer, TEMPORARY_ANSWERS_TIMEOUT_SECONDS, "an answer that is not temporary")


def test_a_keyed_cart_answered_503_while_a_participant_is_stopped_is_placed_by_its_retry(
    http_app: HttpApp, http: httpx.Client
) -> None:
    """The participant's process is stopped (SIGSTOP): the cart's prepare there gets no answer
    within the call timeout, longer than the pending lease. The retry, once it runs again, finds
    that attempt lapsed and places the cart anew."""
    home_sku, other_sku = cart_skus(http_app)
    for sku in (home_sku, other_sku):
        stock(http, http_app, sku, 5)
    body = {"lines": [{"sku": home_sku, "quantity": 2}, {"sku": other_sku, "quantity": 3}]}
    headers = bearer(http_app.writer_key) | {"Idempotency-Key": f"cart-{uuid.uuid4().hex}"}
    pid = ray.get(http_app.shard_actor(1).status.remote(), timeout=30).pid
    os.kill(pid, signal.SIGSTOP)
    try:
        first = http.post("/v1/reservations", json=body, headers=headers)
    finally:
        os.kill(pid, signal.SIGCONT)
    problem = assert_problem(first, 503, "shard-unavailable")
    assert problem["shard"] == 1 and int(first.headers["Retry-After"]) >= 1, problem
    again = not_temporary(lambda: http.post("/v1/reservations", json=body, headers=headers))
    assert again.status_code == 201, again.text
    placed = again.json()
    assert placed["status"] == "active"
    assert sorted((line["sku"], line["quantity"]) for line in placed["lines"]) == sorted(
        [(home_sku, 2), (other_sku, 3)]
    )
    # Held once: what the lapsed attempt held is released.
    wait_for(
        lambda: [totals(http, http_app, sku) for sku in (home_sku, other_sku)] == [(5, 2), (5, 3)],
        PENDING_LEASE_SECONDS + 10,
        "every line held once",
    )
    replay = http.post("/v1/reservations", json=body, headers=headers)
    assert replay.status_code == 201 and replay.json() == placed, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    rid = placed["reservation_id"]
    got = http.get(f"/v1/reservations/{rid}", headers=bearer(http_app.reader_key))
    assert got.status_code == 200 and got.json()["status"] == "active", got.text


# -- a replica killed mid-cart ------------------------------------------------------------------


def replica_pids() -> list[int]:
    """The app's replica processes of this session's Ray (started by, so under, this process)."""
    pids = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if "ServeReplica:inventory" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


class Carts:
    """Carts sent with idempotency keys, so any of them can be asked again after a crash."""

    def __init__(self, app: HttpApp, skus: list[str]) -> None:
        self.app, self.skus = app, skus
        self.keys: list[tuple[str, int]] = []
        # Carts answered 201, which only a serving replica gives; attempts go on while none is.
        self.placed = 0
        self.lock = threading.Lock()

    def body(self, n: int) -> dict[str, Any]:
        lines = [self.skus[n % 2], self.skus[2 + n % 3 % 2], self.skus[n % 4]]
        return {
            "lines": [{"sku": sku, "quantity": 1} for sku in lines],
            "ttl_seconds": CART_TTL_SECONDS,
        }

    def place(self, client: httpx.Client, n: int) -> httpx.Response:
        key = f"cart-{uuid.uuid4().hex}"
        with self.lock:
            self.keys.append((key, n))
        answer = self.send(client, key, n)
        if answer.status_code == 201:
            with self.lock:
                self.placed += 1
        return answer

    def wait_for_placed(self, more: int, what: str) -> None:
        """Until `more` carts than now have been placed."""
        placed = self.placed
        wait_for(lambda: self.placed >= placed + more, REPLICA_RESTART_TIMEOUT_SECONDS, what)

    def send(self, client: httpx.Client, key: str, n: int) -> httpx.Response:
        headers = bearer(self.app.writer_key) | {"Idempotency-Key": key}
        return client.post("/v1/reservations", json=self.body(n), headers=headers)


def shopper(app: HttpApp, carts: Carts, stop: threading.Event, seed: int) -> None:
    with httpx.Client(base_url=app.base_url, timeout=30.0) as client:
        n = seed
        while not stop.is_set():
            n += 4
            try:
                carts.place(client, n)
            except httpx.HTTPError:
                continue  # the connection died with the replica: asked again at the end


def test_a_replica_killed_mid_cart_leaves_every_cart_whole(
    http_app: HttpApp, http: httpx.Client
) -> None:
    skus = [http_app.sku(shard=shard) for shard in (0, 0, 1, 1)]
    on_hand = 100_000
    for sku in skus:
        stock(http, http_app, sku, on_hand)
    carts = Carts(http_app, skus)
    stop = threading.Event()
    threads = [
        threading.Thread(target=shopper, args=(http_app, carts, stop, seed)) for seed in range(4)
    ]
    for thread in threads:
        thread.start()
    killed: set[int] = set()
    try:
        for _ in range(2):
            # Each kill is of a replica that is placing carts, so it catches some mid-cart.
            carts.wait_for_placed(20, "carts placed by a serving replica")
            pids = wait_for(
                lambda: [pid for pid in replica_pids() if pid not in killed],
                REPLICA_RESTART_TIMEOUT_SECONDS,
                "a replica process not killed yet",
            )
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed.update(pids)
        carts.wait_for_placed(20, "carts placed after the restart")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    # Every cart asked again with its key: with stock for all of them, each is placed, whole.
    units: dict[str, int] = dict.fromkeys(skus, 0)
    ids: list[str] = []
    for key, n in carts.keys:
        answer = not_temporary(lambda: carts.send(http, key, n))  # noqa: B023
        assert answer.status_code == 201, (key, answer.text)
        ids.append(answer.json()["reservation_id"])
    for rid in ids:
        view = http.get(f"/v1/reservations/{rid}", headers=bearer(http_app.reader_key)).json()
        assert view["status"] == "active", view
        for line in view["lines"]:
            units[line["sku"]] += line["quantity"]
    # Orphaned pending holds (a replica died between protocol steps) end within the lease.
    wait_for(
        lambda: [totals(http, http_app, sku)[1] for sku in skus] == [units[s] for s in skus],
        PENDING_LEASE_SECONDS + 10,
        "reserved to equal the lines of the active carts",
    )
    # Each cart's record at its home (shard 0) and its part on shard 1 are active.
    shards = [http_app.shard_actor(shard) for shard in (0, 1)]
    for rid in ids[:200]:
        parts = ray.get([shard.get_hold.remote(rid) for shard in shards], timeout=30)
        statuses = [p.status if isinstance(p, HoldView) else None for p in parts]
        assert statuses == [HoldStatus.ACTIVE] * 2, (rid, parts)
