"""The shard actor with real Ray, real SQLite files and real process kills."""

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable

import pyarrow as pa
import pytest
import ray

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import (
    AdjustStock,
    HoldStatus,
    InsufficientStock,
    LineRequest,
    ReserveStock,
    SkuView,
    TransferStock,
)
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.errors import NotOwner, ShardUnavailable, StorageFailure
from inventory_actors.shard.partitioning import new_hold_id, slot_of
from inventory_actors.shard.protocol import Outcome, ShardStatus, Submission
from inventory_actors.shard.restock_chunk import CHUNK_SCHEMA, RestockChunk
from tests.conftest import ClientFactory, wait_for

pytestmark = pytest.mark.ray

STOCK = 100_000


def _transfer(index: int) -> Submission:
    return Submission(TransferStock("T-1", "berlin", "paris", 1), idempotency_key=f"move-{index}")


def _levels(client: InventoryClient) -> dict[str, int]:
    view = client.get_sku("T-1")
    assert view is not None
    return {level.location: level.on_hand for level in view.locations}


def _wait_until_up(client: InventoryClient, killed_pid: int | None = None) -> ShardStatus:
    """The shard's status once it is available, in a process other than `killed_pid`."""

    def up() -> ShardStatus | None:
        status = client.status()[0]
        if isinstance(status, ShardStatus) and status.available and status.pid != killed_pid:
            return status
        return None

    return wait_for(up, 60, "the shard to come back")


def _stream_transfers_while(
    client: InventoryClient, crash: Callable[[ShardStatus], None]
) -> dict[int, Outcome]:
    """Send transfers one call at a time from a thread; crash the shard midway. Returns once
    the shard is back, in a new process, and acknowledges transfers again."""
    outcomes: dict[int, Outcome] = {}
    stop = threading.Event()

    def stream() -> None:
        index = 0
        while not stop.is_set() and index < 5_000:
            outcomes[index] = client.execute([_transfer(index)])[0]
            index += 1

    thread = threading.Thread(target=stream)
    thread.start()
    wait_for(lambda: len(outcomes) >= 200, 60, "200 acknowledged transfers")
    first = _wait_until_up(client)
    crash(first)
    # A call in the shard when it dies fails; but one sent once Ray knows that the shard is
    # restarting waits for the restarted shard and succeeds, so no call has to fail.
    _wait_until_up(client, killed_pid=first.pid)
    wait_for(lambda: sum(o.ok for o in list(outcomes.values())[-50:]) >= 50, 60, "acks again")
    stop.set()
    thread.join(timeout=60)
    return outcomes


def _check_exactly_once(client: InventoryClient, outcomes: dict[int, Outcome]) -> None:
    acknowledged = [i for i, o in outcomes.items() if o.ok]
    unknown = [i for i, o in outcomes.items() if not o.ok]
    assert all(isinstance(outcomes[i].value, ShardUnavailable) for i in unknown), [
        outcomes[i].value for i in unknown
    ]
    levels = _levels(client)
    # Every acknowledged transfer is there; no transfer is half-applied (stock is conserved).
    assert levels["berlin"] + levels["paris"] == STOCK
    assert len(acknowledged) <= levels["paris"] <= len(outcomes)
    # Retrying the unknown ones with their keys applies each at most once in total.
    retried = client.execute([_transfer(i) for i in unknown])
    assert all(o.ok for o in retried), [o.value for o in retried if not o.ok]
    assert _levels(client)["paris"] == len(outcomes)
    # Retrying acknowledged ones returns their original result and applies nothing.
    again = client.execute([_transfer(i) for i in acknowledged[:20]])
    assert all(o.replayed for o in again)
    assert [o.value for o in again] == [outcomes[i].value for i in acknowledged[:20]]
    assert _levels(client)["paris"] == len(outcomes)


def _stocked(make_client: ClientFactory) -> InventoryClient:
    client = make_client(call_timeout_seconds=10.0)
    client.adjust("T-1", "berlin", STOCK)
    return client


def test_acknowledged_transfers_survive_ray_kill_and_retries_apply_once(
    make_client: ClientFactory,
) -> None:
    client = _stocked(make_client)
    outcomes = _stream_transfers_while(
        client, lambda _: ray.kill(client.shards[0], no_restart=False)
    )
    _check_exactly_once(client, outcomes)


def test_acknowledged_transfers_survive_sigkill_of_the_shard_process(
    make_client: ClientFactory,
) -> None:
    client = _stocked(make_client)
    outcomes = _stream_transfers_while(client, lambda status: os.kill(status.pid, signal.SIGKILL))
    _check_exactly_once(client, outcomes)


def test_of_200_concurrent_reserves_for_100_units_exactly_100_succeed(
    make_client: ClientFactory,
) -> None:
    client = make_client(shard_count=2)
    client.adjust("LAST-UNITS", "berlin", 100)
    slot = slot_of("LAST-UNITS")
    pending = [
        client.submit(
            [Submission(ReserveStock(new_hold_id(slot), (LineRequest("LAST-UNITS", 1),), 600_000))]
        )
        for _ in range(200)
    ]
    outcomes = [p.wait()[0] for p in pending]
    assert sum(o.ok for o in outcomes) == 100
    assert sum(isinstance(o.value, InsufficientStock) for o in outcomes) == 100
    view = client.get_sku("LAST-UNITS")
    assert view is not None
    assert (view.on_hand, view.reserved, view.available) == (100, 100, 0)


def test_a_failed_log_write_fails_only_its_batch_and_loses_nothing_else(
    make_client: ClientFactory,
) -> None:
    client = make_client(config=ShardConfig(allow_fault_injection=True))
    before = client.adjust("IO-1", "berlin", 10)
    ray.get(client.shards[0].fail_next_writes.remote(1))
    failed = client.execute(
        [Submission(TransferStock("IO-1", "berlin", "paris", 1)) for _ in range(5)]
    )
    assert all(isinstance(o.value, StorageFailure) for o in failed)
    assert client.get_sku("IO-1") == before
    after = client.adjust("IO-1", "berlin", 5)
    assert after.version == before.version + 1
    assert after.locations[0].on_hand == 15
    status = client.status()[0]
    assert isinstance(status, ShardStatus)
    assert status.storage_failures == 1 and status.available


def test_a_full_disk_fails_the_batch_that_needs_room_and_the_shard_goes_on(
    make_client: ClientFactory,
) -> None:
    client = make_client(config=ShardConfig(allow_fault_injection=True))
    before = client.adjust("FULL-1", "berlin", 10)
    ray.get(client.shards[0].inject_fault.remote("disk-full"))
    # A batch of 500 records needs new pages of the file: SQLite answers SQLITE_FULL.
    big = [
        Submission(AdjustStock("FULL-1", "berlin", 1, "received", f"po-{n:04d}-" + "x" * 100))
        for n in range(500)
    ]
    failed = client.execute(big)
    assert all(isinstance(o.value, StorageFailure) for o in failed)
    assert "full" in str(failed[0].value)
    assert client.get_sku("FULL-1") == before
    # Reopened, the file grows again.
    assert all(o.ok for o in client.execute(big))
    view = client.get_sku("FULL-1")
    assert view is not None and view.locations[0].on_hand == 510


def test_a_shard_refuses_fault_injection_unless_its_config_allows_it(
    make_client: ClientFactory,
) -> None:
    client = make_client()
    with pytest.raises(ray.exceptions.RayTaskError, match="disabled"):
        ray.get(client.shards[0].inject_fault.remote("clock-jump", 60))


def test_a_hold_expires_after_a_restart_without_any_request(make_client: ClientFactory) -> None:
    client = make_client()
    client.adjust("EXP-1", "berlin", 5)
    hold = client.reserve([LineRequest("EXP-1", 2)], ttl_seconds=1)
    first = _wait_until_up(client)
    os.kill(first.pid, signal.SIGKILL)

    def units_released() -> SkuView | None:
        view = client.get_sku("EXP-1")
        return view if view is not None and view.reserved == 0 else None

    wait_for(units_released, 30, "the expiry timer of the restarted shard")
    view = client.get_hold(hold.hold_id)
    assert view is not None and view.status is HoldStatus.EXPIRED
    assert view.finished_at_ms is not None


def test_a_frozen_clock_holds_every_deadline_until_it_runs_again(
    make_client: ClientFactory,
) -> None:
    client = make_client(config=ShardConfig(allow_fault_injection=True))
    client.adjust("FRZ-1", "berlin", 5)
    hold = client.reserve([LineRequest("FRZ-1", 2)], ttl_seconds=1)
    shard = client.shards[0]
    ray.get(shard.inject_fault.remote("clock-freeze", 1))
    # A jump while frozen moves nothing now; the hold would be two minutes past its deadline.
    ray.get(shard.inject_fault.remote("clock-jump", 120))
    # The experiment is the wait: five expiry ticks pass and the hold stays active.
    time.sleep(1.0)
    view = client.get_hold(hold.hold_id)
    assert view is not None and view.status is HoldStatus.ACTIVE
    sku = client.get_sku("FRZ-1")
    assert sku is not None and sku.reserved == 2
    ray.get(shard.inject_fault.remote("clock-freeze", 0))

    def expired() -> SkuView | None:
        found = client.get_sku("FRZ-1")
        return found if found is not None and found.reserved == 0 else None

    wait_for(expired, 30, "the hold to expire once the clock runs")


def test_a_command_sent_to_the_wrong_shard_actor_is_refused_and_applies_nothing(
    make_client: ClientFactory,
) -> None:
    client = make_client(shard_count=2)
    names = (f"MISROUTED-{n}" for n in range(1_000))
    sku = next(name for name in names if client.partition.owner(sku=name) == 0)
    wrong = 1
    adjust = Submission(AdjustStock(sku, "berlin", 5, "received"), "misrouted-1", "print-1")
    [outcome] = asyncio.run(client.call_shard(wrong, [adjust]))
    error = outcome.value
    assert isinstance(error, NotOwner), error
    assert (error.shard_id, error.what, error.key, error.owner) == (wrong, "SKU", sku, 0)
    # A restock job's part of shard 0's rows, sent to shard 1: refused as well.
    table = pa.table(
        [[1, 2], [sku, sku], ["berlin", "paris"], [3, 4], ["received", "received"]],
        schema=CHUNK_SCHEMA,
    )
    part = RestockChunk("job-misrouted", 0, wrong, "delta", "digest", table)
    refused: Outcome = ray.get(client.shards[wrong].restock.remote(part), timeout=30)
    assert isinstance(refused.value, NotOwner), refused.value
    # Nothing was applied on either shard, and the key was not used up: the same command,
    # sent to the shard that owns the SKU, runs (and is not a replay).
    assert ray.get(client.shards[wrong].get_skus.remote([sku]), timeout=30) == [None]
    assert client.get_sku(sku) is None
    [routed] = client.execute([adjust])
    assert isinstance(routed.value, SkuView) and not routed.replayed
    assert routed.value.on_hand == 5
