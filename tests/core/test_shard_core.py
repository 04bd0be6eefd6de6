"""The shard engine without Ray: group commit, durability, idempotency, failures, timers and
snapshots, on an in-memory store and a fake clock."""

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from inventory_actors.domain import (
    AdjustStock,
    Command,
    CommitHold,
    ExpireHolds,
    HoldStatus,
    HoldView,
    InsufficientStock,
    InvalidCommand,
    LineRequest,
    ReleaseHold,
    ReserveStock,
    SetStock,
    SkuView,
    StockAdjusted,
    TransferStock,
)
from inventory_actors.shard.codec import decode_command, decode_events, encode_command
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.errors import (
    IdempotencyKeyReused,
    Overloaded,
    ShardUnavailable,
    StorageFailure,
)
from inventory_actors.shard.protocol import Outcome, Submission
from persistence import MemoryShardStore, ShardStore, SqliteShardStore
from tests.conftest import poll

T = TypeVar("T")
START_MS = 1_700_000_000_000
TTL = 60_000


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now_ms: int = START_MS) -> None:
        self.now_ms = now_ms
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.now_ms

    def advance(self, ms: int) -> None:
        self.now_ms += ms


def make_core(
    store: ShardStore, clock: Clock, config: ShardConfig | None = None, start: bool = True
) -> ShardCore:
    core = ShardCore(0, lambda: store, clock, config or ShardConfig())
    if start:
        core.start()
    return core


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout=30))


def adjust(delta: int, sku: str = "A", location: str = "berlin") -> AdjustStock:
    return AdjustStock(sku, location, delta, "received")


def reserve(hold_id: str, quantity: int = 1, sku: str = "A") -> ReserveStock:
    return ReserveStock(hold_id, (LineRequest(sku, quantity),), TTL)


def sku_of(core: ShardCore, sku: str = "A") -> SkuView:
    (view,) = core.read_skus([sku])
    assert view is not None
    return view


async def ok(core: ShardCore, command: Command) -> Outcome:
    outcome = await core.run_command(command)
    assert outcome.ok, outcome
    return outcome


# -- group commit and durability --------------------------------------------------------------


def test_concurrent_callers_share_transactions() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        outcomes = await asyncio.gather(*(core.run_command(adjust(1)) for _ in range(200)))
        assert all(o.ok and not o.replayed for o in outcomes)
        assert sorted(o.lsn or 0 for o in outcomes) == list(range(1, 201))
        assert core.counters.commands == 200
        assert 1 <= core.counters.batches < 200
        assert [r.lsn for r in store.log] == list(range(1, 201))
        assert sku_of(core).on_hand == 200
        await core.stop()

    run(body)


def test_a_batch_holds_at_most_the_configured_number_of_commands() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore(), Clock(), ShardConfig(batch_commands_max=10))
        await asyncio.gather(*(core.run_command(adjust(1)) for _ in range(95)))
        assert core.counters.batches >= 10
        assert sku_of(core).on_hand == 95
        await core.stop()

    run(body)


def test_a_command_is_in_the_log_before_its_caller_hears_back() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        outcome = await ok(core, adjust(5))
        assert outcome.lsn == 1
        (record,) = store.log
        assert record.lsn == 1 and record.at_ms == START_MS
        assert decode_command(record.command) == adjust(5)
        (event,) = decode_events(record.events)
        assert isinstance(event, StockAdjusted) and event.level.on_hand == 5
        await core.stop()

    run(body)


def test_a_command_that_came_as_text_is_logged_as_that_text() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        texts = [encode_command(adjust(5)), encode_command(adjust(-9))]
        outcomes = await core.submit_texts([Submission(adjust(5)), Submission(adjust(-9))], texts)
        assert outcomes[0].ok and isinstance(outcomes[1].value, InsufficientStock)
        (record,) = store.log
        assert record.command is texts[0]
        with pytest.raises(ValueError):
            await core.submit_texts([Submission(adjust(5))], [])
        await core.stop()

    run(body)


def test_a_refused_command_writes_no_log_record() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        outcome = await core.run_command(adjust(-1))
        assert isinstance(outcome.value, InsufficientStock)
        assert outcome.lsn is None and store.log == []
        await core.stop()

    run(body)


def test_one_call_with_several_commands_answers_them_in_order() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore(), Clock())
        outcomes = await core.submit(
            [Submission(adjust(3)), Submission(adjust(-5)), Submission(adjust(2))]
        )
        assert [o.ok for o in outcomes] == [True, False, True]
        assert isinstance(outcomes[1].value, InsufficientStock)
        assert [o.lsn for o in outcomes] == [1, None, 2]
        assert await core.submit([]) == []
        await core.stop()

    run(body)


def test_two_hundred_carts_race_for_a_hundred_units_and_exactly_a_hundred_win() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore(), Clock())
        await ok(core, SetStock("A", "berlin", 100))
        outcomes = await asyncio.gather(
            *(core.run_command(reserve(f"cart-{i}")) for i in range(200))
        )
        won = [o for o in outcomes if o.ok]
        lost = [o for o in outcomes if isinstance(o.value, InsufficientStock)]
        assert len(won) == 100 and len(lost) == 100
        view = sku_of(core)
        assert (view.on_hand, view.reserved, view.available) == (100, 100, 0)
        core.ledger.check_invariants()
        await core.stop()

    run(body)


# -- idempotency ------------------------------------------------------------------------------


def test_a_retried_command_is_answered_from_its_record_and_applied_once() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        first = (await core.submit([Submission(adjust(5), "key-1")]))[0]
        again = (await core.submit([Submission(adjust(5), "key-1")]))[0]
        assert first.ok and not first.replayed
        assert again.replayed and again.value == first.value and again.lsn == first.lsn == 1
        assert sku_of(core).on_hand == 5
        assert len(store.log) == 1
        await core.stop()

    run(body)


def test_a_key_used_with_another_command_is_refused() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore(), Clock())
        await core.submit([Submission(adjust(5), "key-1")])
        (outcome,) = await core.submit([Submission(adjust(6), "key-1")])
        assert isinstance(outcome.value, IdempotencyKeyReused)
        assert outcome.value.key == "key-1"
        assert sku_of(core).on_hand == 5
        await core.stop()

    run(body)


def test_a_key_sent_twice_in_one_batch_applies_once() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        outcomes = await core.submit(
            [
                Submission(adjust(5), "key-1"),
                Submission(adjust(5), "key-1"),
                Submission(adjust(7), "key-1"),
            ]
        )
        assert outcomes[0].ok and not outcomes[0].replayed
        assert outcomes[1].replayed and outcomes[1].value == outcomes[0].value
        assert isinstance(outcomes[2].value, IdempotencyKeyReused)
        assert core.counters.batches == 1
        assert len(store.log) == 1 and list(store.idempotency) == ["key-1"]
        assert sku_of(core).on_hand == 5
        await core.stop()

    run(body)


def test_concurrent_callers_with_one_key_apply_the_command_once() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore(), Clock())
        outcomes = await asyncio.gather(
            *(core.submit([Submission(adjust(2), "same")]) for _ in range(20))
        )
        flat = [o for call in outcomes for o in call]
        assert sum(not o.replayed for o in flat) == 1
        assert all(o.ok and o.lsn == 1 for o in flat)
        assert sku_of(core).on_hand == 2
        await core.stop()

    run(body)


def test_a_refusal_with_a_key_is_replayed_even_after_the_stock_arrives() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore(), Clock())
        (first,) = await core.submit([Submission(reserve("h1"), "cart-1")])
        assert isinstance(first.value, InsufficientStock) and first.lsn is None
        await ok(core, adjust(10))
        (again,) = await core.submit([Submission(reserve("h1"), "cart-1")])
        assert again.replayed and isinstance(again.value, InsufficientStock)
        assert again.value.shortages == first.value.shortages
        assert core.read_hold("h1") is None
        await core.stop()

    run(body)


def test_an_explicit_fingerprint_decides_what_the_same_command_is() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore(), Clock())
        await core.submit([Submission(adjust(1), "k", fingerprint="POST /a body-1")])
        (same,) = await core.submit([Submission(adjust(1), "k", fingerprint="POST /a body-1")])
        (other,) = await core.submit([Submission(adjust(1), "k", fingerprint="POST /a body-2")])
        assert same.replayed
        assert isinstance(other.value, IdempotencyKeyReused)
        await core.stop()

    run(body)


def test_idempotency_records_outlive_a_restart() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        (first,) = await core.submit([Submission(adjust(4), "key-1")])
        await core.stop()
        core = make_core(store, Clock())
        (again,) = await core.submit([Submission(adjust(4), "key-1")])
        assert again.replayed and again.lsn == first.lsn
        assert sku_of(core).on_hand == 4
        await core.stop()

    run(body)


def test_an_empty_idempotency_key_is_refused_and_its_neighbours_still_run() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore(), Clock())
        refused, neighbour = await core.submit([Submission(adjust(1), ""), Submission(adjust(2))])
        assert isinstance(refused.value, InvalidCommand)
        assert neighbour.ok, neighbour
        assert sku_of(core).on_hand == 2
        await core.stop()

    run(body)


# -- failures ---------------------------------------------------------------------------------


def test_a_failed_write_fails_its_batch_and_the_shard_rebuilds_from_disk() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        await ok(core, adjust(10))
        durable = core.ledger.fingerprint()
        store.failing_appends = 1
        outcomes = await asyncio.gather(
            *(core.run_command(reserve(f"h{i}")) for i in range(5)),
            core.run_command(adjust(3)),
        )
        assert all(isinstance(o.value, StorageFailure) for o in outcomes)
        assert core.counters.storage_failures == 1
        assert core.available
        assert core.ledger.fingerprint() == durable
        assert core.last_lsn == 1 and len(store.log) == 1
        await ok(core, reserve("h0"))
        assert sku_of(core).reserved == 1
        assert core.last_lsn == 2
        await core.stop()

    run(body)


def test_a_rebuild_frees_the_ledger_it_replaces() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        await ok(core, adjust(10))
        replaced = weakref.ref(core.ledger)
        store.failing_appends = 1
        outcome = await core.run_command(adjust(1))
        assert isinstance(outcome.value, StorageFailure)
        assert replaced() is None  # frozen after recovery, yet collected once replaced
        assert core.available and sku_of(core).on_hand == 10
        await core.stop()

    run(body)


def test_a_failed_write_with_keys_can_be_retried_with_the_same_keys() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        store.failing_appends = 1
        (failed,) = await core.submit([Submission(adjust(5), "key-1")])
        assert isinstance(failed.value, StorageFailure)
        (retried,) = await core.submit([Submission(adjust(5), "key-1")])
        assert retried.ok and not retried.replayed
        assert sku_of(core).on_hand == 5
        await core.stop()

    run(body)


def test_a_command_the_log_cannot_store_does_not_fail_its_neighbours(tmp_path: Path) -> None:
    async def body() -> None:
        path = tmp_path / "shard.sqlite3"
        core = ShardCore(0, lambda: SqliteShardStore(path), Clock(), ShardConfig())
        core.start()
        bad = AdjustStock("A", "berlin", 1, "received", "\ud800")
        poisoned, neighbour = await core.submit([Submission(bad), Submission(adjust(2))])
        assert neighbour.ok, neighbour
        assert not isinstance(poisoned.value, StorageFailure)
        await core.stop()

    run(body)


def test_a_shard_that_cannot_reopen_its_store_is_unavailable_until_it_can() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        opens = {"count": 0, "fail": False}

        def open_store() -> ShardStore:
            opens["count"] += 1
            if opens["fail"]:
                raise OSError("disk gone")
            return store

        core = ShardCore(0, open_store, Clock(), ShardConfig(recovery_retry_seconds=0.01))
        core.start()
        await ok(core, adjust(5))
        opens["fail"] = True
        store.failing_appends = 1
        (failed,) = await core.submit([Submission(adjust(1))])
        assert isinstance(failed.value, StorageFailure)
        assert not core.available
        (refused,) = await core.submit([Submission(adjust(1))])
        assert isinstance(refused.value, ShardUnavailable)
        with pytest.raises(ShardUnavailable):
            core.read_skus(["A"])
        opens["fail"] = False
        await poll(lambda: core.available, "the shard to recover")
        await ok(core, adjust(1))
        assert sku_of(core).on_hand == 6
        await core.stop()

    run(body)


def test_commands_queued_behind_a_failed_write_hear_at_once_when_the_shard_cannot_recover() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        opens = {"fail": False}

        def open_store() -> ShardStore:
            if opens["fail"]:
                raise OSError("disk gone")
            return store

        config = ShardConfig(batch_commands_max=1, recovery_retry_seconds=60)
        core = ShardCore(0, open_store, Clock(), config)
        core.start()
        await ok(core, adjust(5))
        opens["fail"] = True
        store.failing_appends = 1
        failed, queued = await asyncio.gather(
            core.submit([Submission(adjust(1))]), core.submit([Submission(adjust(2))])
        )
        assert isinstance(failed[0].value, StorageFailure)
        assert isinstance(queued[0].value, ShardUnavailable)
        await core.stop()

    run(body)


def test_commands_queued_behind_a_failed_write_succeed_once_the_shard_has_rebuilt() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock(), ShardConfig(batch_commands_max=2))
        await ok(core, adjust(10))
        store.failing_appends = 1
        outcomes = await asyncio.gather(*(core.run_command(adjust(1)) for _ in range(6)))
        assert [isinstance(o.value, StorageFailure) for o in outcomes] == [True] * 2 + [False] * 4
        assert all(o.ok for o in outcomes[2:])
        assert [o.lsn for o in outcomes[2:]] == [2, 3, 4, 5]
        assert core.counters.storage_failures == 1
        assert sku_of(core).on_hand == 14
        assert [r.lsn for r in store.log] == [1, 2, 3, 4, 5]
        core.ledger.check_invariants()
        await core.stop()

    run(body)


def test_a_full_queue_refuses_new_commands_at_once() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock(), ShardConfig(queue_commands_max=3), start=False)
        waiting = asyncio.ensure_future(core.submit([Submission(adjust(1))] * 3))
        await asyncio.sleep(0)
        assert core.queue_depth == 3
        (refused,) = await core.submit([Submission(adjust(1))])
        assert isinstance(refused.value, Overloaded)
        assert core.counters.overloaded == 1
        core.start()
        assert all(o.ok for o in await waiting)
        assert sku_of(core).on_hand == 3 and len(store.log) == 3
        too_many = await core.submit([Submission(adjust(1))] * 4)
        assert all(isinstance(o.value, Overloaded) for o in too_many)
        assert sku_of(core).on_hand == 3
        await core.stop()

    run(body)


def test_a_stopped_shard_is_unavailable() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock())
        await core.stop()
        assert store.closed
        (outcome,) = await core.submit([Submission(adjust(1))])
        assert isinstance(outcome.value, ShardUnavailable)

    run(body)


# -- timers -----------------------------------------------------------------------------------


def test_the_expiry_timer_expires_a_hold_without_any_request() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        clock = Clock()
        core = make_core(store, clock, ShardConfig(expiry_interval_seconds=0.01))
        await ok(core, adjust(5))
        await ok(core, reserve("h1", 2))
        # With an active hold and no commands, only the timer reads the clock: three reads are
        # three ticks that found nothing due yet.
        reads = clock.reads
        await poll(lambda: clock.reads >= reads + 3, "three ticks of the expiry timer")
        assert core.ledger.holds["h1"].status is HoldStatus.ACTIVE
        assert sku_of(core).reserved == 2
        clock.advance(TTL)
        await poll(
            lambda: core.ledger.holds["h1"].status is HoldStatus.EXPIRED, "the hold to expire"
        )
        assert sku_of(core).reserved == 0
        assert isinstance(decode_command(store.log[-1].command), ExpireHolds)
        await core.stop()

    run(body)


def test_a_hold_read_after_its_expiry_reads_expired_before_the_timer_runs() -> None:
    async def body() -> None:
        clock = Clock()
        core = make_core(MemoryShardStore(), clock, ShardConfig(expiry_interval_seconds=60))
        await ok(core, adjust(5))
        await ok(core, reserve("h1", 2))
        clock.advance(TTL)
        view = core.read_hold("h1")
        assert isinstance(view, HoldView) and view.status is HoldStatus.EXPIRED
        outcome = await core.run_command(CommitHold("h1"))
        assert not outcome.ok
        await core.stop()

    run(body)


def test_housekeeping_forgets_old_idempotency_records_and_finished_holds() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        clock = Clock()
        config = ShardConfig(idempotency_retention_seconds=10, hold_retention_seconds=10)
        core = make_core(store, clock, config)
        await core.submit([Submission(adjust(5), "key-1")])
        await ok(core, reserve("h1"))
        await ok(core, CommitHold("h1"))
        clock.advance(5_000)
        await core.housekeep()
        assert "key-1" in store.idempotency and core.read_hold("h1") is not None
        clock.advance(6_000)
        await core.housekeep()
        assert store.idempotency == {}
        assert core.read_hold("h1") is None
        await core.stop()

    run(body)


def test_housekeeping_keeps_at_most_the_configured_number_of_finished_holds() -> None:
    async def body() -> None:
        clock = Clock()
        core = make_core(MemoryShardStore(), clock, ShardConfig(finished_holds_max=3))
        await ok(core, adjust(10))
        for index in range(6):
            clock.advance(1)
            await ok(core, reserve(f"h{index}"))
            await ok(core, CommitHold(f"h{index}"))
        await core.housekeep()
        kept = [f"h{i}" for i in range(6) if core.read_hold(f"h{i}") is not None]
        assert kept == ["h3", "h4", "h5"]
        assert sku_of(core).on_hand == 4
        await core.stop()

    run(body)


async def _finish_holds(core: ShardCore, clock: Clock, count: int, step_ms: int) -> list[str]:
    """Place and commit `count` one-unit holds, moving the clock `step_ms` before each; answer
    the ids of the holds the shard still remembers after housekeeping."""
    await ok(core, adjust(count))
    for index in range(count):
        clock.advance(step_ms)
        await ok(core, reserve(f"h{index}"))
        await ok(core, CommitHold(f"h{index}"))
    await core.housekeep()
    core.ledger.check_invariants()
    return [f"h{i}" for i in range(count) if core.read_hold(f"h{i}") is not None]


def test_the_count_cap_holds_even_when_holds_finish_in_the_same_millisecond() -> None:
    async def body() -> None:
        clock = Clock()
        core = make_core(MemoryShardStore(), clock, ShardConfig(finished_holds_max=3))
        kept = await _finish_holds(core, clock, 6, step_ms=0)
        assert kept == ["h3", "h4", "h5"]
        await core.stop()

    run(body)


def test_a_count_cap_of_zero_keeps_no_finished_hold() -> None:
    async def body() -> None:
        clock = Clock()
        core = make_core(MemoryShardStore(), clock, ShardConfig(finished_holds_max=0))
        assert await _finish_holds(core, clock, 4, step_ms=1) == []
        await core.stop()

    run(body)


# -- snapshots and restarts -------------------------------------------------------------------


async def _busy_shard(core: ShardCore) -> None:
    await ok(core, SetStock("A", "berlin", 50))
    await ok(core, SetStock("B", "paris", 50))
    for index in range(10):
        await ok(core, reserve(f"h{index}", 1, "AB"[index % 2]))
    await ok(core, CommitHold("h0"))


def test_a_restarted_shard_recovers_the_same_state_from_a_snapshot_and_the_log() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        clock = Clock()
        core = make_core(store, clock, ShardConfig(snapshot_chunk_rows=2))
        await _busy_shard(core)
        taking = core.snapshots.start(clock())
        # Commands keep running while the snapshot copies its chunks.
        during = asyncio.gather(*(core.run_command(adjust(1, "A")) for _ in range(5)))
        assert await taking
        await during
        await ok(core, reserve("late", 3, "B"))
        info = store.latest_snapshot()
        assert info is not None and info.start_lsn >= 13
        assert core.snapshots.completed == 1
        live, last_lsn = core.ledger.fingerprint(), core.last_lsn
        await core.stop()

        again = make_core(store, clock)
        assert again.ledger.fingerprint() == live
        assert again.last_lsn == last_lsn
        await ok(again, adjust(1, "B", "paris"))
        assert again.last_lsn == last_lsn + 1
        await again.stop()

    run(body)


def test_a_snapshot_taken_while_holds_finish_are_pruned_and_return_recovers_the_live_state() -> (
    None
):
    async def body() -> None:
        store = MemoryShardStore()
        clock = Clock()
        # One row per chunk, so the snapshot yields to the writer between every SKU and hold;
        # finished holds are pruned as soon as the clock moves.
        config = ShardConfig(snapshot_chunk_rows=1, hold_retention_seconds=0)
        core = make_core(store, clock, config)
        skus = "ABCDEF"
        for sku in skus:
            await ok(core, SetStock(sku, "berlin", 20))
            await ok(core, SetStock(sku, "paris", 5))
        for index in range(12):
            await ok(core, reserve(f"h{index}", 2, skus[index % 6]))
        clock.advance(1)
        taking = core.snapshots.start(clock())
        finished_at: list[int] = []
        taking.add_done_callback(lambda _: finished_at.append(core.last_lsn))

        async def churn() -> None:
            for index in range(12):
                finish = CommitHold if index % 2 else ReleaseHold
                await ok(core, finish(f"h{index}"))
                clock.advance(1)
                await core.housekeep()
                assert core.read_hold(f"h{index}") is None
                # The pruned id comes back as a new hold on another SKU.
                await ok(core, reserve(f"h{index}", 1, skus[(index + 1) % 6]))
                await ok(core, TransferStock(skus[index % 6], "berlin", "paris", 1))

        await asyncio.gather(taking, churn())
        assert taking.result() is True
        start_lsn = core.snapshots.last_start_lsn
        assert start_lsn == 24
        assert start_lsn < finished_at[0] < core.last_lsn, "the snapshot overlapped no writes"
        info = store.latest_snapshot()
        assert info is not None and info.start_lsn == start_lsn
        core.ledger.check_invariants()
        live, last_lsn = core.ledger.fingerprint(), core.last_lsn
        await core.stop()

        again = make_core(store, clock)
        assert again.ledger.fingerprint() == live
        assert again.last_lsn == last_lsn
        assert again.snapshots.records_since == last_lsn - start_lsn
        await again.stop()

    run(body)


def test_a_snapshot_starts_by_itself_after_enough_records() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store, Clock(), ShardConfig(snapshot_every_records=5))
        for _ in range(6):
            await ok(core, adjust(1))
        await poll(store.latest_snapshot, "a snapshot")
        assert core.snapshots.completed >= 1
        await core.stop()

    run(body)


def test_a_shard_on_a_sqlite_file_recovers_after_a_restart(tmp_path: Path) -> None:
    async def body() -> None:
        path = tmp_path / "shard.sqlite3"
        clock = Clock()
        core = ShardCore(0, lambda: SqliteShardStore(path), clock, ShardConfig())
        core.start()
        await _busy_shard(core)
        assert await core.snapshots.start(clock())
        await ok(core, adjust(2, "B", "paris"))
        live = core.ledger.fingerprint()
        await core.stop()

        again = ShardCore(0, lambda: SqliteShardStore(path), clock, ShardConfig())
        again.start()
        assert again.ledger.fingerprint() == live
        assert again.last_lsn == 14
        await again.stop()

    run(body)


def test_a_ledger_replaced_by_a_second_recovery_is_freed_although_recovery_froze_the_heap() -> None:
    store = MemoryShardStore()
    core = make_core(store, Clock(), start=False)
    replaced = weakref.ref(core.ledger)
    assert core._recover_now()
    assert replaced() is None  # collected before the new ledger was frozen
    assert gc.get_freeze_count() > 0
    assert core._recover_now()
