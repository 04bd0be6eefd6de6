"""A shard's business clock and its writer, with real shard cores over SQLite files: a refusal
that depends on expiry is logged before it is answered, the clock never reads less than the
log's last time (after a restart too), and whatever fails after a batch's write, its callers are
answered and the writer goes on."""

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from inventory_actors.domain import (
    AdjustStock,
    CommitHold,
    HoldNotActive,
    HoldStatus,
    LineRequest,
    ReserveStock,
)
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.fault_hooks import FaultHooks
from inventory_actors.shard.protocol import Outcome, Submission
from persistence import SqliteShardStore

START_MS = 1_700_000_000_000
TTL_MS = 60_000
# The expiry timer never ticks within a test: whatever expires, expires by a command.
NO_TIMER = ShardConfig(expiry_interval_seconds=3_600)
# Each answer comes at once; the bound only turns a caller left waiting into a failure.
ANSWER_TIMEOUT_SECONDS = 30.0


class Clock:
    """A clock the test sets by hand."""

    def __init__(self) -> None:
        self.now_ms = START_MS

    def __call__(self) -> int:
        return self.now_ms


def open_core(
    path: Path, clock: Clock, config: ShardConfig = NO_TIMER, faults: FaultHooks | None = None
) -> ShardCore:
    core = ShardCore(0, lambda: SqliteShardStore(path), clock, config, faults=faults)
    core.start()
    return core


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), timeout=120))


async def answered(core: ShardCore, *commands: object) -> list[Outcome]:
    subs = [Submission(command) for command in commands]  # type: ignore[arg-type]
    return await asyncio.wait_for(core.submit(subs), ANSWER_TIMEOUT_SECONDS)


def adjust(delta: int) -> AdjustStock:
    return AdjustStock("A", "berlin", delta, "received")


def hold(hold_id: str, quantity: int = 2) -> ReserveStock:
    return ReserveStock(hold_id, (LineRequest("A", quantity),), TTL_MS)


def on_hand_and_reserved(core: ShardCore) -> tuple[int, int]:
    (view,) = core.read_skus(["A"])
    assert view is not None
    return view.on_hand, view.reserved


# -- the business clock -----------------------------------------------------------------------


def test_a_commit_refused_as_expired_stays_refused_after_a_restart_with_the_clock_behind(
    tmp_path: Path,
) -> None:
    path, clock = tmp_path / "shard.sqlite3", Clock()

    async def body() -> None:
        core = open_core(path, clock)
        assert all(o.ok for o in await answered(core, adjust(5), hold("h1")))
        clock.now_ms += TTL_MS
        (refused,) = await answered(core, CommitHold("h1"))
        assert isinstance(refused.value, HoldNotActive) and refused.value.status == "expired"
        # Answered once the expiry is in the log, not only worked out from the clock.
        assert core.ledger.holds["h1"].status is HoldStatus.EXPIRED
        assert on_hand_and_reserved(core) == (5, 0)
        await core.stop()
        clock.now_ms -= 3_600_000  # the node it restarts on is an hour behind
        core = open_core(path, clock)
        assert core.ledger.holds["h1"].status is HoldStatus.EXPIRED
        (again,) = await answered(core, CommitHold("h1"))
        assert isinstance(again.value, HoldNotActive) and again.value.status == "expired"
        assert on_hand_and_reserved(core) == (5, 0)
        await core.stop()

    run(body)


def test_the_business_clock_never_reads_less_than_the_last_time_in_the_log(
    tmp_path: Path,
) -> None:
    path, clock = tmp_path / "shard.sqlite3", Clock()

    async def body() -> None:
        core = open_core(path, clock)
        assert all(o.ok for o in await answered(core, adjust(5)))
        clock.now_ms -= 60_000
        assert core.clock_ms() == START_MS
        (placed,) = await answered(core, hold("h1"))
        assert placed.ok and placed.value.expires_at_ms == START_MS + TTL_MS  # type: ignore[union-attr]
        await core.stop()
        core = open_core(path, clock)  # recovered while the clock is still behind
        assert core.clock_ms() == START_MS
        view = core.read_hold("h1")
        assert view is not None and view.expires_at_ms == START_MS + TTL_MS
        clock.now_ms += 90_000
        assert core.clock_ms() == START_MS + 30_000  # and it runs again once past
        await core.stop()

    run(body)


# -- the writer, after a batch's write --------------------------------------------------------


def failing_observer(commands: int, seconds: float) -> None:
    raise RuntimeError("an observer that fails")


def failing_crash() -> None:
    raise RuntimeError("a crash hook that fails instead of ending the process")


@pytest.mark.parametrize("where", ["batch-observer", "after-commit-hook"])
def test_a_failure_after_the_write_answers_every_caller_and_the_writer_goes_on(
    tmp_path: Path, where: str
) -> None:
    path, clock = tmp_path / "shard.sqlite3", Clock()

    async def body() -> None:
        faults = FaultHooks(crash_after_commit=where == "after-commit-hook", crash=failing_crash)
        core = open_core(path, clock, faults=faults)
        if where == "batch-observer":
            core.on_batch = failing_observer
        first = await answered(core, adjust(5), adjust(1))
        assert all(o.ok for o in first), first
        assert [o.lsn for o in first] == [1, 2]
        second = await answered(core, adjust(2))
        assert second[0].ok and second[0].lsn == 3, second
        assert core.available and on_hand_and_reserved(core) == (8, 0)
        await core.stop()
        core = open_core(path, clock)
        assert on_hand_and_reserved(core) == (8, 0)  # every answered change is on disk
        await core.stop()

    run(body)


def test_a_writer_fault_outside_the_batch_fails_stop_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, clock = tmp_path / "shard.sqlite3", Clock()

    async def body() -> None:
        core = open_core(path, clock)
        faults = [RuntimeError("a snapshot scheduler that fails once")]

        def maybe_start(now_ms: int) -> None:
            if faults:
                raise faults.pop()

        monkeypatch.setattr(core.snapshots, "maybe_start", maybe_start)
        first = await answered(core, adjust(5))
        assert first[0].ok, first
        second = await answered(core, adjust(2))
        assert second[0].ok, second
        # Failed stop, visibly: counted, and memory rebuilt from the disk.
        assert core.counters.storage_failures == 1
        assert core.available and on_hand_and_reserved(core) == (7, 0)
        await core.stop()

    run(body)
