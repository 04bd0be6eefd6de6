"""Low-stock thresholds through real shard actors: routed by SKU, alerts gathered from every
shard, and both kept across a snapshot and a restart."""

import asyncio
from typing import Any

import pytest
import ray
from ray.exceptions import RayError

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import LineRequest, ThresholdView
from inventory_actors.shard.protocol import ShardStatus
from tests.conftest import ClientFactory, wait_for

pytestmark = pytest.mark.ray


def _sku_on(client: InventoryClient, shard: int, prefix: str) -> str:
    index = 0
    while client.partition.owner(sku=f"{prefix}-{index}") != shard:
        index += 1
    return f"{prefix}-{index}"


def _restart(client: InventoryClient, shard: int) -> None:
    """Kill the shard's process and wait for its successor (ray.kill returns before the old
    process is gone, so the old one may still answer a status call)."""
    before = client.status()[shard]
    assert isinstance(before, ShardStatus)
    ray.kill(client.shards[shard], no_restart=False)

    def up() -> bool:
        status = client.status()[shard]
        return isinstance(status, ShardStatus) and status.available and status.pid != before.pid

    wait_for(up, 60, "the shard to come back")


def test_alerts_gather_every_shard_and_survive_a_snapshot_and_a_restart(
    make_client: ClientFactory,
) -> None:
    client = make_client(shard_count=2)
    first, second = _sku_on(client, 0, "L"), _sku_on(client, 1, "L")
    for sku in (first, second):
        client.set_on_hand(sku, "berlin", 10)
        assert client.set_threshold(sku, "berlin", 5) == ThresholdView(sku, "berlin", 5, 10, False)
    assert client.alerts() == []

    client.adjust(first, "berlin", -6, "damaged")
    client.reserve([LineRequest(second, 7, "berlin")])
    assert client.alerts() == sorted([(first, "berlin", 4, 5), (second, "berlin", 3, 5)])

    assert ray.get(client.shards[0].snapshot.remote(), timeout=60)
    client.adjust(first, "berlin", 2, "received")  # recovers after the snapshot: from the log
    _restart(client, 0)
    assert client.alerts() == [(second, "berlin", 3, 5)]
    assert client.get_threshold(first, "berlin") == ThresholdView(first, "berlin", 5, 6, False)


def test_a_retried_threshold_with_its_key_is_answered_from_its_record(
    make_client: ClientFactory,
) -> None:
    client = make_client()
    first = client.set_threshold("K-1", "x", 3, idempotency_key="t-1")
    again = client.set_threshold("K-1", "x", 3, idempotency_key="t-1")
    assert first == again == ThresholdView("K-1", "x", 3, 0, True)
    assert client.alerts() == [("K-1", "x", 0, 3)]


def _gone(shard: Any) -> bool:
    try:
        ray.get(shard.ping.remote(), timeout=2)
    except RayError:
        return True
    return False


def test_alerts_of_a_shard_that_is_down_are_reported_missing_not_absent(
    make_client: ClientFactory,
) -> None:
    client = make_client(shard_count=2)
    up, down = _sku_on(client, 0, "U"), _sku_on(client, 1, "U")
    client.set_threshold(up, "x", 1)
    client.set_threshold(down, "x", 1)
    ray.kill(client.shards[1], no_restart=True)
    # A kill takes effect a moment later: until then the shard may still answer.
    wait_for(lambda: _gone(client.shards[1]), 30, "shard 1 to be gone")
    found, missing = asyncio.run(client.alerts_async(timeout_seconds=10))
    assert found == [(up, "x", 0, 1)]
    assert missing == [1]
