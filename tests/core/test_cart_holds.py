"""Reservations across shards with real shard cores (SQLite files, timers, the settle loop)
wired together in one process, and the coordinator that a Serve replica runs."""

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from inventory_actors.cluster.coordinator import place_reservation
from inventory_actors.domain import (
    AdjustStock,
    CommitHold,
    HoldStatus,
    HoldView,
    InsufficientStock,
    LineRequest,
    OpenReservation,
    PrepareHold,
    ReleaseHold,
    ReserveStock,
    SettleHold,
)
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.partitioning import PartitionMap, new_hold_id, slot_of
from inventory_actors.shard.protocol import Outcome, Submission
from persistence import SqliteShardStore
from tests.conftest import poll

T = TypeVar("T")
SHARDS = 3
PARTITION = PartitionMap.initial(SHARDS)
CONFIG = ShardConfig(expiry_interval_seconds=0.02, settle_retry_seconds=0.05)


def sku_on(shard: int, tag: str = "") -> str:
    """A SKU name that the partition map puts on `shard`."""
    for n in range(10_000):
        name = f"sku-{tag}{n}"
        if PARTITION.owner(sku=name) == shard:
            return name
    raise AssertionError("no SKU found")


def clock_ms() -> int:
    return time.time_ns() // 1_000_000


class Shards:
    """Shard cores over real files; `down` shards refuse calls like a dead actor."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cores: list[ShardCore] = []
        self.down: set[int] = set()
        # How far each shard's clock is set from the real one (a clock jump).
        self.offset_ms: dict[int, int] = {}
        for shard in range(SHARDS):
            self.cores.append(self.open(shard))

    def open(self, shard: int) -> ShardCore:
        path = self.root / f"shard-{shard}.sqlite3"
        core = ShardCore(
            shard,
            lambda: SqliteShardStore(path),
            lambda: clock_ms() + self.offset_ms.get(shard, 0),
            CONFIG,
            self.call,
            # As in production: each shard checks that what it is sent is its own.
            partition=PARTITION,
        )
        core.start()
        return core

    async def call(self, shard: int, subs: Sequence[Submission]) -> list[Outcome]:
        if shard in self.down:
            return [Outcome(ShardUnavailable(shard, "down"))] * len(subs)
        return await self.cores[shard].submit(subs)

    async def restart(self, shard: int) -> None:
        await self.cores[shard].stop()
        self.cores[shard] = self.open(shard)

    async def stop(self) -> None:
        for core in self.cores:
            await core.stop()

    def level(self, sku: str) -> tuple[int, int]:
        core = self.cores[PARTITION.owner(sku=sku)]
        view = core.read_skus([sku])[0]
        assert view is not None
        return view.on_hand, view.reserved

    def check(self) -> None:
        for core in self.cores:
            core.ledger.check_invariants()


def run(scenario: Callable[[Shards], "asyncio.Future[None] | object"], tmp_path: Path) -> None:
    async def main() -> None:
        shards = Shards(tmp_path)
        try:
            await scenario(shards)  # type: ignore[misc]
            # Every step of the protocol reaches a shard that owns what it names.
            assert [core.counters.misrouted for core in shards.cores] == [0] * SHARDS
        finally:
            await shards.stop()

    asyncio.run(main())


async def stock(shards: Shards, skus: Sequence[str], on_hand: int) -> None:
    for sku in skus:
        command = AdjustStock(sku, "wh", on_hand, "received")
        outcome = (await shards.call(PARTITION.owner(sku=sku), [Submission(command)]))[0]
        assert outcome.ok


def cart(skus: Sequence[str], quantity: int = 1, key: str | None = None) -> ReserveStock:
    lines = tuple(LineRequest(sku, quantity) for sku in skus)
    hold_id = new_hold_id(slot_of(skus[0]), None if key is None else key.encode())
    return ReserveStock(hold_id, lines, 60_000, "cart")


def test_a_cart_over_three_shards_is_placed_committed_and_settled(tmp_path: Path) -> None:
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        placed = await place_reservation(shards.call, PARTITION, cart(skus, 2))
        assert isinstance(placed.value, HoldView), placed
        assert placed.value.status is HoldStatus.ACTIVE
        assert sorted(line.sku for line in placed.value.lines) == sorted(skus)
        assert [shards.level(sku) for sku in skus] == [(5, 2)] * 3
        rid = placed.value.hold_id
        home = PARTITION.owner(hold=rid)
        committed = (await shards.call(home, [Submission(CommitHold(rid))]))[0]
        assert isinstance(committed.value, HoldView)
        assert committed.value.status is HoldStatus.COMMITTED
        await poll(lambda: [shards.level(s) for s in skus] == [(3, 0)] * 3, "parts committed")
        await poll(lambda: not shards.cores[home].ledger.unsettled, "home settled")
        shards.check()

    run(scenario, tmp_path)


def test_a_short_line_anywhere_holds_nothing_anywhere(tmp_path: Path) -> None:
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus[:2], 5)
        await stock(shards, skus[2:], 1)
        placed = await place_reservation(shards.call, PARTITION, cart(skus, 2))
        assert isinstance(placed.value, InsufficientStock)
        assert [(s.sku, s.requested, s.available) for s in placed.value.shortages] == [
            (skus[2], 2, 1)
        ]
        await poll(lambda: [shards.level(s) for s in skus[:2]] == [(5, 0)] * 2, "released")
        shards.check()

    run(scenario, tmp_path)


def test_two_lines_of_one_sku_cannot_take_more_than_is_available(tmp_path: Path) -> None:
    twice = [sku_on(0), sku_on(1), sku_on(1)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, twice[:2], 3)
        placed = await place_reservation(shards.call, PARTITION, cart(twice, 2))
        assert isinstance(placed.value, InsufficientStock)
        assert placed.value.shortages[0].requested == 4
        await poll(lambda: shards.level(twice[0]) == (3, 0), "home part released")

    run(scenario, tmp_path)


def test_a_coordinator_that_dies_after_preparing_leaves_nothing_after_the_lease(
    tmp_path: Path,
) -> None:
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        rid = new_hold_id(slot_of(skus[0]))
        lines = [(LineRequest(sku, 1),) for sku in skus]
        opening = OpenReservation(rid, 0, (0, 1, 2), lines[0], 60_000, 300, None)
        opened = (await shards.call(0, [Submission(opening)]))[0]
        assert isinstance(opened.value, HoldView)
        prepared = await shards.call(
            1, [Submission(PrepareHold(rid, lines[1], opened.value.expires_at_ms))]
        )
        assert prepared[0].ok
        # ...and the coordinator is gone: no activation, no abort.
        assert [shards.level(s) for s in skus] == [(5, 1), (5, 1), (5, 0)]
        await poll(lambda: [shards.level(s) for s in skus] == [(5, 0)] * 3, "lease ended", 3)
        view = shards.cores[0].read_hold(rid)
        assert view is not None and view.status is HoldStatus.RELEASED
        # Shard 2 heard of the release before its part ever arrived: a late part is refused.
        late = await shards.call(2, [Submission(PrepareHold(rid, lines[2], clock_ms() + 60_000))])
        assert not late[0].ok and shards.level(skus[2]) == (5, 0)
        shards.check()

    run(scenario, tmp_path)


async def released_while_shard_2_is_down(shards: Shards, skus: Sequence[str]) -> str:
    """A cart over shards 0 (its home), 1 and 2, released while shard 2 is down."""
    await stock(shards, skus, 5)
    placed = await place_reservation(shards.call, PARTITION, cart(skus))
    assert isinstance(placed.value, HoldView)
    rid = placed.value.hold_id
    assert PARTITION.owner(hold=rid) == 0
    shards.down.add(2)
    released = (await shards.call(0, [Submission(ReleaseHold(rid))]))[0]
    assert released.ok
    return rid


def test_a_decision_reaches_a_shard_that_was_down_and_survives_a_home_restart(
    tmp_path: Path,
) -> None:
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        rid = await released_while_shard_2_is_down(shards, skus)
        await poll(lambda: shards.level(skus[1]) == (5, 0), "shard 1 told")
        await poll(lambda: shards.cores[0].ledger.unsettled[rid].unsettled == (2,), "1 marked")
        assert shards.level(skus[2]) == (5, 1)  # down: still held, as decided-but-unsettled
        await shards.restart(0)  # the decision and what is unsettled survive the home's restart
        assert shards.cores[0].ledger.unsettled[rid].unsettled == (2,)
        shards.down.clear()
        await poll(lambda: shards.level(skus[2]) == (5, 0), "shard 2 told after it came back")
        await poll(lambda: not shards.cores[0].ledger.unsettled, "home settled")
        shards.check()

    run(scenario, tmp_path)


def test_a_home_whose_clock_is_set_back_still_retries_its_decisions_at_once(
    tmp_path: Path,
) -> None:
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        rid = await released_while_shard_2_is_down(shards, skus)
        await poll(lambda: shards.cores[0].ledger.unsettled[rid].unsettled == (2,), "1 marked")
        # The home's clock goes back an hour while it waits to try shard 2 again: the retry is
        # timed in real seconds, not by the business clock.
        shards.offset_ms[0] = -3_600_000
        shards.down.clear()
        await poll(lambda: shards.level(skus[2]) == (5, 0), "shard 2 told after it came back")
        shards.check()

    run(scenario, tmp_path)


def test_a_refused_decision_is_counted_and_not_retried_forever(tmp_path: Path) -> None:
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        placed = await place_reservation(shards.call, PARTITION, cart(skus))
        assert isinstance(placed.value, HoldView)
        rid = placed.value.hold_id
        assert PARTITION.owner(hold=rid) == 0
        # A broken protocol: shard 1 ends its part on its own, then the home commits.
        out_of_band = await shards.call(1, [Submission(SettleHold(rid, "released"))])
        assert out_of_band[0].ok
        committed = (await shards.call(0, [Submission(CommitHold(rid))]))[0]
        assert committed.ok
        await poll(lambda: not shards.cores[0].ledger.unsettled, "home settled")
        assert shards.cores[0].counters.settle_refusals == 1
        assert [shards.level(sku) for sku in skus] == [(4, 0), (5, 0), (4, 0)]

    run(scenario, tmp_path)


def test_a_keyed_retry_replays_every_step_and_holds_once(tmp_path: Path) -> None:
    skus = [sku_on(0), sku_on(1)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        command = cart(skus, key="cart-7")
        first = await place_reservation(shards.call, PARTITION, command, key="k-cart-7")
        again = await place_reservation(shards.call, PARTITION, command, key="k-cart-7")
        assert isinstance(first.value, HoldView) and first.value == again.value
        assert again.replayed
        assert [shards.level(s) for s in skus] == [(5, 1)] * 2

    run(scenario, tmp_path)


def test_concurrent_carts_on_overlapping_skus_never_oversell(tmp_path: Path) -> None:
    skus = [sku_on(shard, tag) for shard in range(SHARDS) for tag in ("a", "b")]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 10)
        carts = [cart([skus[(i + j * 2) % len(skus)] for j in range(3)]) for i in range(60)]
        answers = await asyncio.gather(
            *(place_reservation(shards.call, PARTITION, c) for c in carts)
        )
        placed = [a.value for a in answers if isinstance(a.value, HoldView)]
        refused = [a.value for a in answers if isinstance(a.value, InsufficientStock)]
        assert len(placed) + len(refused) == len(carts)
        held = {sku: 0 for sku in skus}
        for view in placed:
            for line in view.lines:
                held[line.sku] += line.quantity
        await poll(lambda: all(shards.level(s) == (10, held[s]) for s in skus), "reserved = held")
        assert all(count <= 10 for count in held.values())
        shards.check()

    run(scenario, tmp_path)


def test_snapshots_carry_reservations_and_coordinated_parts(tmp_path: Path) -> None:
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 9)
        active = await place_reservation(shards.call, PARTITION, cart(skus))
        committed = await place_reservation(shards.call, PARTITION, cart(skus))
        assert isinstance(active.value, HoldView) and isinstance(committed.value, HoldView)
        rid = committed.value.hold_id
        shards.down.add(2)  # so the commit stays unsettled for shard 2
        home = PARTITION.owner(hold=rid)
        assert (await shards.call(home, [Submission(CommitHold(rid))]))[0].ok
        await poll(lambda: shards.level(skus[1]) == (8, 1), "shard 1 told")
        await poll(lambda: shards.cores[home].ledger.unsettled[rid].unsettled == (2,), "marked")
        before = [core.ledger.fingerprint() for core in shards.cores]
        for core in shards.cores:
            assert await core.snapshots.start(clock_ms())
        for shard in range(SHARDS):
            await shards.restart(shard)
        for shard, core in enumerate(shards.cores):
            assert core.snapshots.records_since == 0, "recovered from the log, not the snapshot"
            assert core.ledger.fingerprint() == before[shard], f"shard {shard}"
        assert shards.cores[home].ledger.unsettled[rid].unsettled == (2,)
        assert shards.cores[2].read_hold(active.value.hold_id) is not None
        shards.check()
        # The recovered home still settles, and a recovered part still waits for its home.
        shards.down.clear()
        await poll(lambda: shards.level(skus[2]) == (8, 1), "shard 2 told after recovery")
        part = shards.cores[2].ledger.holds[active.value.hold_id]
        assert part.coordinated

    run(scenario, tmp_path)


class CoordinatorDied(Exception):
    """The coordinating process is gone: it sends nothing more and hears no answer."""


@pytest.mark.parametrize("calls", [0, 1, 2, 3])
@pytest.mark.parametrize("sent", [False, True], ids=["before-send", "after-send"])
def test_a_coordinator_dying_at_any_step_leaves_every_shard_consistent(
    tmp_path: Path, calls: int, sent: bool
) -> None:
    """The steps are open, prepare (two shards), activate: the coordinator dies before its call
    number `calls` + 1 is sent, or right after it was sent but before the answer came back."""
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        made = 0

        async def dying_send(shard: int, subs: Sequence[Submission]) -> list[Outcome]:
            nonlocal made
            made += 1
            if made > calls + 1 or (made == calls + 1 and not sent):
                raise CoordinatorDied
            answer = await shards.call(shard, subs)
            if made == calls + 1:
                raise CoordinatorDied
            return answer

        command = cart(skus)
        with pytest.raises(CoordinatorDied):
            await place_reservation(dying_send, PARTITION, command, lease_ms=300)
        rid, home = command.hold_id, PARTITION.owner(hold=command.hold_id)
        activated = calls == 3 and sent  # the fourth call, activation, reached the home
        if activated:
            view = shards.cores[home].read_hold(rid)
            assert view is not None and view.status is HoldStatus.ACTIVE
            assert [shards.level(s) for s in skus] == [(5, 1)] * 3
            return
        await poll(lambda: [shards.level(s) for s in skus] == [(5, 0)] * 3, "all freed", 3)
        view = shards.cores[home].read_hold(rid)
        opened = calls > 0 or sent
        assert (view is not None) == opened
        if view is not None:
            assert view.status is HoldStatus.RELEASED
        await poll(lambda: not shards.cores[home].ledger.unsettled, "home settled")
        shards.check()

    run(scenario, tmp_path)
