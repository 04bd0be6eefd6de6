"""Carts whose lines live on different shards, over real HTTP: all or nothing, races decided
once, and a Serve replica killed mid-cart leaves nothing half done."""

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


def definite(ask: Callable[[], httpx.Response]) -> httpx.Response:
    """Ask until the answer is 201 or 409 (while the app restarts it may be 5xx or nothing)."""

    def answer() -> httpx.Response | None:
        response = ask()
        return response if response.status_code in (201, 409) else None

    return wait_for(answer, 60, "a definite answer for a cart")


class Carts:
    """Carts sent with idempotency keys, so any of them can be asked again after a crash."""

    def __init__(self, app: HttpApp, skus: list[str]) -> None:
        self.app, self.skus = app, skus
        self.keys: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def body(self, n: int) -> dict[str, Any]:
        lines = [self.skus[n % 2], self.skus[2 + n % 3 % 2], self.skus[n % 4]]
        return {"lines": [{"sku": sku, "quantity": 1} for sku in lines], "ttl_seconds": 60}

    def place(self, client: httpx.Client, n: int) -> httpx.Response:
        key = f"cart-{uuid.uuid4().hex}"
        with self.lock:
            self.keys.append((key, n))
        return self.send(client, key, n)

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
    try:
        for _ in range(2):
            wait_for(lambda: len(carts.keys) >= 20, 60, "carts under way")
            pids = replica_pids()
            assert pids, "no replica found"
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            wanted = len(carts.keys) + 20
            wait_for(lambda: len(carts.keys) >= wanted, 120, "carts after the restart")  # noqa: B023
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    # Every cart asked again with its key: each is whole (held on every shard) or refused.
    units: dict[str, int] = dict.fromkeys(skus, 0)
    ids: list[str] = []
    for key, n in carts.keys:
        answer = definite(lambda: carts.send(http, key, n))  # noqa: B023
        if answer.status_code == 201:
            ids.append(answer.json()["reservation_id"])
    assert ids, "no cart was placed"
    for rid in ids:
        view = http.get(f"/v1/reservations/{rid}", headers=bearer(http_app.reader_key)).json()
        if view["status"] == "active":
            for line in view["lines"]:
                units[line["sku"]] += line["quantity"]
    # Orphaned pending holds (a replica died between protocol steps) end within the lease.
    wait_for(
        lambda: [totals(http, http_app, sku)[1] for sku in skus] == [units[s] for s in skus],
        PENDING_LEASE_SECONDS + 10,
        "reserved to equal the lines of the active carts",
    )
    # Each part on each shard agrees with its home's record.
    shards = [http_app.shard_actor(shard) for shard in (0, 1)]
    for rid in ids[:200]:
        parts = ray.get([shard.get_hold.remote(rid) for shard in shards], timeout=30)
        statuses = {p.status for p in parts if isinstance(p, HoldView)}
        assert statuses in ({HoldStatus.ACTIVE}, {HoldStatus.RELEASED}, set()), (rid, parts)
