"""The engine's fault hooks (the fault-injection suite's switches), on an in-memory store: each
does what it says, and they are all off by default."""

import asyncio

from inventory_actors.domain import AdjustStock, SkuView
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.errors import IdempotencyKeyReused
from inventory_actors.shard.fault_hooks import FaultHooks
from inventory_actors.shard.protocol import Submission
from persistence import MemoryShardStore
from tests.core.test_shard_core import START_MS, Clock, run

ADJUST = Submission(AdjustStock("A", "east", 5, "received"), "key-1")


def make(faults: FaultHooks) -> tuple[ShardCore, MemoryShardStore]:
    store = MemoryShardStore()
    core = ShardCore(0, lambda: store, Clock(START_MS), ShardConfig(), faults=faults)
    core.start()
    return core, store


def on_hand(core: ShardCore) -> int:
    view = core.read_skus(["A"])[0]
    assert isinstance(view, SkuView)
    return view.locations[0].on_hand


def test_hooks_are_off_by_default_and_a_retry_applies_once() -> None:
    async def body() -> None:
        core, store = make(FaultHooks())
        await core.submit([ADJUST])
        await core.submit([ADJUST])
        assert on_hand(core) == 5
        assert len(store.read_log(0, 10)) == 1
        await core.stop()

    run(body)


def test_crash_after_commit_fires_once_with_the_record_on_disk_and_no_answer_yet() -> None:
    async def body() -> None:
        seen: list[int] = []
        faults = FaultHooks(crash_after_commit=True)
        core, store = make(faults)
        answer = asyncio.ensure_future(core.submit([ADJUST]))
        faults.crash = lambda: seen.append(len(store.read_log(0, 10)) + 10 * answer.done())
        await answer
        assert seen == [1]  # the record was durable and the caller not yet answered
        await core.submit([Submission(AdjustStock("A", "east", 1, "received"))])
        assert seen == [1]  # once
        await core.stop()

    run(body)


def test_skip_idempotency_applies_a_retry_again() -> None:
    async def body() -> None:
        core, _ = make(FaultHooks(skip_idempotency=True))
        await core.submit([ADJUST])
        await core.submit([ADJUST])
        assert on_hand(core) == 10
        await core.stop()

    run(body)


def test_ack_before_commit_answers_before_the_write() -> None:
    async def body() -> None:
        core, store = make(FaultHooks(ack_before_commit_seconds=0.5))
        outcomes = await core.submit([ADJUST])
        assert outcomes[0].ok
        assert store.read_log(0, 10) == []  # answered, not yet written
        await core.stop()

    run(body)


def test_refuse_retries_answers_a_retry_as_a_reused_key_and_applies_nothing() -> None:
    async def body() -> None:
        core, store = make(FaultHooks(refuse_retries=True))
        first = await core.submit([ADJUST])
        again = await core.submit([ADJUST])
        assert first[0].ok
        assert isinstance(again[0].value, IdempotencyKeyReused)
        assert on_hand(core) == 5
        assert len(store.read_log(0, 10)) == 1
        await core.stop()

    run(body)
