"""A shard core as a replicated primary, over a real SQLite file, with a shipper the test
answers by hand: a batch is answered only once a majority has it, a read never sees a batch
before that, and a batch whose majority fails is answered as unknown and ends the primacy."""

import asyncio
from pathlib import Path

from inventory_actors.domain import AdjustStock, SkuView
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.errors import NotPrimary, ShardUnavailable
from inventory_actors.shard.protocol import Outcome, Submission
from persistence import IdempotencyRecord, LogRecord, SqliteShardStore

NO_TIMER = ShardConfig(expiry_interval_seconds=3_600)
WAIT_SECONDS = 10.0


class HandShipper:
    """Each shipped batch waits for the test to acknowledge or fail it."""

    def __init__(self) -> None:
        self.shipped: list[tuple[list[LogRecord], asyncio.Future[None]]] = []
        self.lost_with: BaseException | None = None
        self.lease_error: Exception | None = None

    def ship(
        self, records: list[LogRecord], idempotency: list[IdempotencyRecord]
    ) -> "asyncio.Future[None]":
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.shipped.append((records, future))
        return future

    def lost(self, error: BaseException) -> None:
        self.lost_with = error

    async def lease(self) -> None:
        if self.lease_error is not None:
            raise self.lease_error


def leading(path: Path) -> tuple[ShardCore, HandShipper]:
    core = ShardCore(0, lambda: SqliteShardStore(path), lambda: 1_700_000_000_000, NO_TIMER)
    shipper = HandShipper()
    core.lead(shipper)
    return core, shipper


def add(core: ShardCore, delta: int) -> "asyncio.Task[list[Outcome]]":
    command = AdjustStock("sku", "wh", delta, "received")
    return asyncio.get_running_loop().create_task(core.submit([Submission(command)]))


async def shipped(shipper: HandShipper, count: int) -> None:
    while len(shipper.shipped) < count:
        await asyncio.sleep(0.001)


async def on_hand(core: ShardCore) -> int:
    await asyncio.wait_for(core.settled(), WAIT_SECONDS)
    view = core.read_skus(["sku"])[0]
    assert isinstance(view, SkuView)
    return view.locations[0].on_hand


def test_a_batch_is_answered_only_once_a_majority_has_it(tmp_path: Path) -> None:
    async def body() -> None:
        core, shipper = leading(tmp_path / "s.sqlite3")
        answer = add(core, 5)
        await shipped(shipper, 1)
        await asyncio.sleep(0.05)
        assert not answer.done()
        # Written here already: the primary's fsync overlaps the followers'.
        assert core.store is not None and core.store.last_lsn() == 1
        shipper.shipped[0][1].set_result(None)
        outcome = (await asyncio.wait_for(answer, WAIT_SECONDS))[0]
        assert outcome.ok and outcome.lsn == 1
        await core.stop()

    asyncio.run(body())


def test_a_read_waits_for_the_batch_in_flight(tmp_path: Path) -> None:
    async def body() -> None:
        core, shipper = leading(tmp_path / "s.sqlite3")
        first = add(core, 5)
        await shipped(shipper, 1)
        shipper.shipped[0][1].set_result(None)
        await first
        second = add(core, 3)
        await shipped(shipper, 2)
        read = asyncio.get_running_loop().create_task(on_hand(core))
        await asyncio.sleep(0.05)
        # Memory holds 8 already; the read must not answer it before a majority has it.
        assert not read.done()
        shipper.shipped[1][1].set_result(None)
        assert await asyncio.wait_for(read, WAIT_SECONDS) == 8
        await second
        await core.stop()

    asyncio.run(body())


def test_a_read_without_a_lease_is_refused(tmp_path: Path) -> None:
    async def body() -> None:
        core, shipper = leading(tmp_path / "s.sqlite3")
        shipper.lease_error = RuntimeError("no majority answered")
        try:
            await on_hand(core)
        except ShardUnavailable as error:
            assert "lease" in error.detail
        else:
            raise AssertionError("a read was served without a lease")
        await core.stop()

    asyncio.run(body())


def test_a_batch_without_a_majority_is_unknown_and_ends_the_primacy(tmp_path: Path) -> None:
    async def body() -> None:
        core, shipper = leading(tmp_path / "s.sqlite3")
        answer = add(core, 5)
        await shipped(shipper, 1)
        shipper.shipped[0][1].set_exception(TimeoutError("no majority"))
        outcome = (await asyncio.wait_for(answer, WAIT_SECONDS))[0]
        assert isinstance(outcome.value, ShardUnavailable)
        assert "unknown" in outcome.value.detail
        assert isinstance(shipper.lost_with, TimeoutError)
        await core.stop()

    asyncio.run(body())


def test_a_primary_that_stops_serving_answers_the_batch_in_flight(tmp_path: Path) -> None:
    async def body() -> None:
        core, shipper = leading(tmp_path / "s.sqlite3")
        answer = add(core, 5)
        await shipped(shipper, 1)
        core.follow(NotPrimary(0, 2, "another"))
        outcome = (await asyncio.wait_for(answer, WAIT_SECONDS))[0]
        assert isinstance(outcome.value, ShardUnavailable)
        # From then on everything is refused before it runs.
        refused = (await asyncio.wait_for(add(core, 1), WAIT_SECONDS))[0]
        assert isinstance(refused.value, NotPrimary)
        await core.stop()

    asyncio.run(body())
