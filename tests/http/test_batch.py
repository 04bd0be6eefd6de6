"""The batch endpoint: independent operations, one result each, in order; and what a flood of
them gets."""

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest

from inventory_actors.shard.partitioning import new_hold_id
from serve_app.keys import Role
from tests.conftest import wait_for
from tests.http.conftest import HttpApp, assert_problem, bearer, sku_view, stock

pytestmark = pytest.mark.ray


def test_a_mixed_batch_answers_each_operation_in_order(
    http_app: HttpApp, http: httpx.Client
) -> None:
    # Operations are independent: each one's answer holds whatever order they run in.
    a, b, c, d = (http_app.sku(shard=shard) for shard in (0, 1, 1, 0))
    stock(http, http_app, a, 10)
    stock(http, http_app, b, 4, "paris")
    stock(http, http_app, d, 4, "paris")
    held = http.post(
        "/v1/reservations",
        json={"lines": [{"sku": a, "quantity": 2}]},
        headers=bearer(http_app.writer_key),
    )
    to_commit = held.json()["reservation_id"]
    operations = [
        {"op": "adjust", "sku": c, "location": "paris", "delta": 4, "reason": "received"},
        {"op": "reserve", "lines": [{"sku": a, "quantity": 3}], "ttl_seconds": 60},
        {"op": "commit", "reservation_id": to_commit},
        {"op": "reserve", "lines": [{"sku": b, "quantity": 5}]},
        {"op": "release", "reservation_id": new_hold_id(11)},
        {"op": "set", "sku": a, "location": "paris", "on_hand": 1},
        {"op": "adjust", "sku": b, "location": "paris", "delta": -10, "reason": "damaged"},
        {"op": "reserve", "lines": [{"sku": d, "quantity": 4, "location": "paris"}]},
    ]
    answer = http.post(
        "/v1/batch", json={"operations": operations}, headers=bearer(http_app.admin_key)
    )
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == [200, 201, 200, 409, 404, 200, 409, 201]
    assert results[0]["body"]["sku"] == c
    assert results[0]["body"]["totals"]["on_hand"] == 4
    assert results[1]["body"]["lines"] == [{"sku": a, "location": "berlin", "quantity": 3}]
    assert results[1]["body"]["status"] == "active"
    assert results[2]["body"]["reservation_id"] == to_commit
    assert results[2]["body"]["status"] == "committed"
    assert results[3]["body"]["type"] == "/problems/insufficient-stock"
    assert results[3]["body"]["lines"] == [{"sku": b, "requested": 5, "available": 4}]
    assert results[4]["body"]["type"] == "/problems/not-found"
    assert results[5]["body"]["sku"] == a
    assert results[6]["body"]["type"] == "/problems/insufficient-stock"
    assert results[7]["body"]["lines"] == [{"sku": d, "location": "paris", "quantity": 4}]
    for result in results:
        if result["status"] >= 400:
            assert result["body"]["status"] == result["status"]
            assert result["body"]["title"] and result["body"]["detail"]

    # Each operation is durable and visible after the answer.
    totals = {sku: sku_view(http, http_app, sku)["totals"] for sku in (a, b, c, d)}
    assert totals == {
        a: {"on_hand": 9, "reserved": 3, "available": 6},
        b: {"on_hand": 4, "reserved": 0, "available": 4},
        c: {"on_hand": 4, "reserved": 0, "available": 4},
        d: {"on_hand": 4, "reserved": 4, "available": 0},
    }


def test_stock_operations_in_a_batch_need_admin(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 10)
    before = sku_view(http, http_app, sku)
    operations = [
        {"op": "reserve", "lines": [{"sku": sku, "quantity": 1}]},
        {"op": "adjust", "sku": sku, "location": "berlin", "delta": 5, "reason": "received"},
    ]
    answer = http.post(
        "/v1/batch", json={"operations": operations}, headers=bearer(http_app.writer_key)
    )
    assert_problem(answer, 403, "forbidden")
    # All or nothing at the door: not even the reservation ran.
    assert sku_view(http, http_app, sku) == before
    set_only = [{"op": "set", "sku": sku, "location": "berlin", "on_hand": 1}]
    answer = http.post(
        "/v1/batch", json={"operations": set_only}, headers=bearer(http_app.writer_key)
    )
    assert_problem(answer, 403, "forbidden")
    answer = http.post(
        "/v1/batch", json={"operations": operations}, headers=bearer(http_app.reader_key)
    )
    assert_problem(answer, 403, "forbidden")
    assert sku_view(http, http_app, sku) == before


def test_an_operation_key_makes_a_batch_retry_safe(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    stock(http, http_app, sku, 10)
    operations = [
        {
            "op": "reserve",
            "lines": [{"sku": sku, "quantity": 2}],
            "idempotency_key": f"batch-{sku}",
        },
        {"op": "reserve", "lines": [{"sku": sku, "quantity": 1}]},
    ]
    auth = bearer(http_app.writer_key)
    first = http.post("/v1/batch", json={"operations": operations}, headers=auth).json()
    again = http.post("/v1/batch", json={"operations": operations}, headers=auth).json()
    assert [r["status"] for r in first["results"]] == [201, 201]
    assert [r["status"] for r in again["results"]] == [201, 201]
    # The keyed operation is the same reservation; the unkeyed one is a new one.
    assert again["results"][0]["body"] == first["results"][0]["body"]
    ids = {r["body"]["reservation_id"] for r in first["results"] + again["results"]}
    assert len(ids) == 3
    assert sku_view(http, http_app, sku)["totals"]["reserved"] == 4


# A batch costs a token per operation, and no key's burst (5,000 in tests/http/conftest.py)
# pays for more than 20,000: each batch of the flood comes with a key of its own.
FLOOD_BATCHES = 12
FLOOD_BATCH_OPERATIONS = 4_900


async def _flood(app: HttpApp, body: dict[str, Any], keys: list[str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=app.base_url, timeout=120.0) as client:
        return list(
            await asyncio.gather(
                *(client.post("/v1/batch", json=body, headers=bearer(key)) for key in keys)
            )
        )


def test_more_waiting_than_a_replica_queues_for_a_shard_is_overloaded(
    http_app: HttpApp, http: httpx.Client
) -> None:
    """A replica queues at most 20,000 commands per shard; twelve batches of 4,900 at once for
    one shard overflow it. (Cheap commands: commits of reservations that do not exist.)"""
    keys = [http_app.new_key(Role.WRITER)[1] for _ in range(FLOOD_BATCHES)]
    # The store file is replaced whole: once the app knows the last key, it knows them all.
    wait_for(
        lambda: http.get("/v1/reservations/r_none", headers=bearer(keys[-1])).status_code == 404,
        10,
        "the app to accept the new keys",
    )
    slot = next(s for s in range(4096) if http_app.partition.owner(slot=s) == 0)
    operations = [
        {"op": "commit", "reservation_id": new_hold_id(slot)} for _ in range(FLOOD_BATCH_OPERATIONS)
    ]
    answers = asyncio.run(_flood(http_app, {"operations": operations}, keys))
    assert [a.status_code for a in answers] == [200] * FLOOD_BATCHES, [
        a.text[:200] for a in answers if a.status_code != 200
    ]
    kinds = Counter(r["body"]["type"] for a in answers for r in a.json()["results"])
    assert set(kinds) <= {"/problems/not-found", "/problems/overloaded"}, kinds
    assert kinds["/problems/overloaded"] > 0, kinds
    assert kinds["/problems/not-found"] > 0, kinds
    for answer in answers:
        for result in answer.json()["results"]:
            if result["body"]["type"] == "/problems/overloaded":
                assert result["status"] == result["body"]["status"] == 503
                assert result["body"]["title"] and result["body"]["detail"]
