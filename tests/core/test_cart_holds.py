"""Reservations across shards with real shard cores (SQLite files, timers, the settle loop)
wired together in one process, and the coordinator that a Serve replica runs."""

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from inventory_actors.cluster.coordinator import (
    PENDING_LEASE_MS,
    Send,
    attempt_id,
    check_client_key,
    legacy_step_key,
    place_reservation,
    step_key,
)
from inventory_actors.domain import (
    ActivateReservation,
    AdjustStock,
    CommitHold,
    HoldNotActive,
    HoldStatus,
    HoldView,
    InsufficientStock,
    InvalidCommand,
    LineRequest,
    OpenReservation,
    PrepareHold,
    ReleaseHold,
    ReserveStock,
    SettleHold,
)
from inventory_actors.domain.coordination import PREPARE_CLOCK_SKEW_MS_MAX
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
    """Shard cores over real files; `down` shards refuse calls like a dead actor, and shards in
    `cut_off` refuse the calls of other shards (a home's decisions) but not a coordinator's."""

    def __init__(self, root: Path, config: ShardConfig = CONFIG) -> None:
        self.root = root
        self.config = config
        self.cores: list[ShardCore] = []
        self.down: set[int] = set()
        self.cut_off: set[int] = set()
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
            self.config,
            self.peer_call,
            # As in production: each shard checks that what it is sent is its own.
            partition=PARTITION,
        )
        core.start()
        return core

    async def call(self, shard: int, subs: Sequence[Submission]) -> list[Outcome]:
        if shard in self.down:
            return [Outcome(ShardUnavailable(shard, "down"))] * len(subs)
        return await self.cores[shard].submit(subs)

    async def peer_call(self, shard: int, subs: Sequence[Submission]) -> list[Outcome]:
        if shard in self.cut_off:
            return [Outcome(ShardUnavailable(shard, "cut off"))] * len(subs)
        return await self.call(shard, subs)

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


def run(
    scenario: Callable[[Shards], "asyncio.Future[None] | object"],
    tmp_path: Path,
    config: ShardConfig = CONFIG,
) -> None:
    async def main() -> None:
        shards = Shards(tmp_path, config)
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


def cart(
    skus: Sequence[str], quantity: int = 1, key: str | None = None, ttl_ms: int = 60_000
) -> ReserveStock:
    lines = tuple(LineRequest(sku, quantity) for sku in skus)
    hold_id = new_hold_id(slot_of(skus[0]), None if key is None else key.encode())
    return ReserveStock(hold_id, lines, ttl_ms, "cart")


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


def dying_send(shards: Shards, calls: int, sent: bool) -> Send:
    """A coordinator's `send` that dies before its call number `calls` + 1 is sent, or right
    after it was sent but before the answer came back."""
    made = 0

    async def send(shard: int, subs: Sequence[Submission]) -> list[Outcome]:
        nonlocal made
        made += 1
        if made > calls + 1 or (made == calls + 1 and not sent):
            raise CoordinatorDied
        answer = await shards.call(shard, subs)
        if made == calls + 1:
            raise CoordinatorDied
        return answer

    return send


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
        command = cart(skus)
        with pytest.raises(CoordinatorDied):
            await place_reservation(
                dying_send(shards, calls, sent), PARTITION, command, lease_ms=300
            )
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


# -- keyed carts: a temporary failure is never the key's answer ---------------------------------

# What the HTTP layer passes for every step of one request: the request's own fingerprint.
FINGERPRINT = "the-request"


async def keyed(
    shards: Shards,
    command: ReserveStock,
    key: str,
    lease_ms: int = PENDING_LEASE_MS,
    send: Send | None = None,
) -> Outcome:
    return await place_reservation(
        send or shards.call,
        PARTITION,
        command,
        key=key,
        fingerprint=FINGERPRINT,
        lease_ms=lease_ms,
    )


def active(outcome: Outcome) -> HoldView:
    assert isinstance(outcome.value, HoldView), outcome
    assert outcome.value.status is HoldStatus.ACTIVE, outcome
    return outcome.value


def levels(shards: Shards, skus: Sequence[str]) -> list[tuple[int, int]]:
    return [shards.level(sku) for sku in skus]


async def lapse(shards: Shards, command: ReserveStock, key: str, down: int) -> None:
    """A first request for the cart while shard `down` is down, answered 503; then its attempt's
    lease ends (the home releases it) and the shard comes back."""
    shards.down.add(down)
    first = await keyed(shards, command, key, lease_ms=2_000)
    assert isinstance(first.value, ShardUnavailable), first
    reservations = shards.cores[PARTITION.owner(hold=command.hold_id)].ledger.reservations
    await poll(
        lambda: reservations[command.hold_id].status is HoldStatus.RELEASED,
        "the first attempt's lease to end",
        15,
    )
    shards.down.discard(down)


def test_a_keyed_cart_answered_503_for_a_down_participant_is_placed_by_its_retry(
    tmp_path: Path,
) -> None:
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        command = cart(skus, 2, key="k-down")
        shards.down.add(2)
        first = await keyed(shards, command, "k-down")
        assert isinstance(first.value, ShardUnavailable) and first.value.shard_id == 2, first
        # Nothing is decided: the attempt waits for the retry, and survives the home's restart.
        await shards.restart(0)
        view = shards.cores[0].read_hold(command.hold_id)
        assert view is not None and view.status is HoldStatus.PENDING
        shards.down.clear()
        again = await keyed(shards, command, "k-down")
        placed = active(again)
        assert placed.hold_id == command.hold_id and not again.replayed
        assert sorted(line.sku for line in placed.lines) == sorted(skus)
        assert levels(shards, skus) == [(5, 2)] * 3
        replay = await keyed(shards, command, "k-down")
        assert replay.value == placed and replay.replayed
        shards.check()

    run(scenario, tmp_path)


def test_a_keyed_retry_after_the_lease_places_the_cart_again_on_the_units_it_held(
    tmp_path: Path,
) -> None:
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 2)
        command = cart(skus, 2, key="k-lapsed")
        # The home cannot tell shard 2 that the first attempt was released: its part there
        # still holds the last 2 units when the retry comes.
        shards.cut_off.add(2)
        await lapse(shards, command, "k-lapsed", down=1)
        assert levels(shards, skus) == [(2, 0), (2, 0), (2, 2)]
        again = await keyed(shards, command, "k-lapsed")
        placed = active(again)
        # A new attempt, under an id of its own; the first one's parts are released.
        assert placed.hold_id == attempt_id(command.hold_id, 2)
        assert PARTITION.owner(hold=placed.hold_id) == 0
        assert levels(shards, skus) == [(2, 2)] * 3
        replay = await keyed(shards, command, "k-lapsed")
        assert replay.value == placed and replay.replayed
        shards.cut_off.clear()
        await poll(lambda: not shards.cores[0].ledger.unsettled, "home settled")
        assert levels(shards, skus) == [(2, 2)] * 3
        shards.check()

    run(scenario, tmp_path)


def test_a_participant_whose_clock_runs_two_minutes_ahead_still_holds_its_part(
    tmp_path: Path,
) -> None:
    skus = [sku_on(0), sku_on(1)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        command = cart(skus, key="k-ahead")
        # Shard 1's clock is past every lease the home gives (1 s) as soon as it is given.
        shards.offset_ms[1] = 120_000
        placed = active(await keyed(shards, command, "k-ahead", lease_ms=1_000))
        assert placed.hold_id == command.hold_id
        assert levels(shards, skus) == [(5, 1)] * 2

    run(scenario, tmp_path)


def test_a_participant_whose_clock_runs_ahead_beyond_any_skew_makes_a_cart_503_never_409(
    tmp_path: Path,
) -> None:
    skus = [sku_on(0), sku_on(1)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        command = cart(skus, key="k-skew")
        shards.offset_ms[1] = PREPARE_CLOCK_SKEW_MS_MAX + 3_000
        first = await keyed(shards, command, "k-skew", lease_ms=1_000)
        assert isinstance(first.value, ShardUnavailable), first
        unkeyed = await place_reservation(shards.call, PARTITION, cart(skus), lease_ms=1_000)
        assert isinstance(unkeyed.value, ShardUnavailable), unkeyed
        await poll(lambda: levels(shards, skus) == [(5, 0)] * 2, "nothing held")

    run(scenario, tmp_path)


def test_a_keyed_cart_refused_for_short_stock_stays_refused(tmp_path: Path) -> None:
    skus = [sku_on(0), sku_on(1)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus[:1], 5)
        await stock(shards, skus[1:], 1)
        command = cart(skus, 2, key="k-short")
        first = await keyed(shards, command, "k-short")
        assert isinstance(first.value, InsufficientStock) and not first.replayed
        await stock(shards, skus[1:], 10)
        again = await keyed(shards, command, "k-short")
        assert isinstance(again.value, InsufficientStock) and again.replayed
        assert again.value.shortages == first.value.shortages
        await poll(lambda: levels(shards, skus) == [(5, 0), (11, 0)], "nothing held")

    run(scenario, tmp_path)


@pytest.mark.parametrize("lease_ends", [False, True], ids=["at-once", "after-the-lease"])
@pytest.mark.parametrize("calls", [0, 1, 2, 3])
@pytest.mark.parametrize("sent", [False, True], ids=["before-send", "after-send"])
def test_a_keyed_cart_whose_coordinator_died_at_any_step_is_placed_once_by_its_retry(
    tmp_path: Path, calls: int, sent: bool, lease_ends: bool
) -> None:
    """The coordinator dies at a step of the first request (open, two prepares, activate); the
    retry comes at once, or after the first attempt's lease has ended."""
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 2)
        command = cart(skus, 2, key="k-died")
        lease_ms = 500 if lease_ends else PENDING_LEASE_MS
        with pytest.raises(CoordinatorDied):
            await keyed(shards, command, "k-died", lease_ms, dying_send(shards, calls, sent))
        home = shards.cores[0]
        if lease_ends and home.read_hold(command.hold_id) is not None:
            await poll(
                lambda: home.ledger.reservations[command.hold_id].status is not HoldStatus.PENDING,
                "the first attempt's lease to end",
                10,
            )
        placed = active(await keyed(shards, command, "k-died"))
        assert sorted(line.sku for line in placed.lines) == sorted(skus)
        # Each line held once, on the last units: what the dead coordinator left is gone.
        await poll(lambda: levels(shards, skus) == [(2, 2)] * 3, "every line held once", 10)
        await poll(lambda: not home.ledger.unsettled, "home settled")
        shards.check()

    run(scenario, tmp_path)


@pytest.mark.parametrize("calls", [3, 4, 5, 7])
@pytest.mark.parametrize("sent", [False, True], ids=["before-send", "after-send"])
def test_a_retry_that_dies_while_moving_to_the_next_attempt_is_finished_by_the_next(
    tmp_path: Path, calls: int, sent: bool
) -> None:
    """After a lapsed first attempt, a retry replays it (open, two prepares), aborts it (call 4),
    opens the second (5), prepares it (6, 7) and activates it (8): it dies at one of those."""
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 2)
        command = cart(skus, 2, key="k-moving")
        await lapse(shards, command, "k-moving", down=2)
        with pytest.raises(CoordinatorDied):
            await keyed(shards, command, "k-moving", send=dying_send(shards, calls, sent))
        placed = active(await keyed(shards, command, "k-moving"))
        assert placed.hold_id == attempt_id(command.hold_id, 2)
        await poll(lambda: levels(shards, skus) == [(2, 2)] * 3, "every line held once", 10)
        shards.check()

    run(scenario, tmp_path)


def test_keyed_retries_racing_each_other_place_one_reservation(tmp_path: Path) -> None:
    skus = [sku_on(0), sku_on(1), sku_on(2)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 2)
        command = cart(skus, 2, key="k-race")
        await lapse(shards, command, "k-race", down=1)
        answers = await asyncio.gather(*(keyed(shards, command, "k-race") for _ in range(3)))
        placed = {active(answer).hold_id for answer in answers}
        assert placed == {attempt_id(command.hold_id, 2)}
        await poll(lambda: levels(shards, skus) == [(2, 2)] * 3, "every line held once", 10)
        shards.check()

    run(scenario, tmp_path)


@pytest.mark.parametrize("steps", [1, 3], ids=["opened", "placed"])
def test_a_cart_begun_under_the_old_step_keys_is_finished_by_its_retry(
    tmp_path: Path, steps: int
) -> None:
    """A cart whose first request ran (some of) its steps under the step keys' old form, as
    before an upgrade: the retry recognises them rather than opening the reservation again."""
    skus = [sku_on(0), sku_on(1)]
    key = "k-old"

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        command = cart(skus, key=key)
        rid = command.hold_id
        line = (LineRequest(skus[0], 1),)
        opening = OpenReservation(rid, 0, (0, 1), line, 60_000, PENDING_LEASE_MS, "cart")
        old_open = Submission(opening, legacy_step_key(key, "open"), FINGERPRINT)
        view = (await shards.call(0, [old_open]))[0].value
        assert isinstance(view, HoldView)
        old_activation = None
        if steps == 3:
            part = PrepareHold(rid, (LineRequest(skus[1], 1),), view.expires_at_ms, "cart")
            prepare = Submission(part, legacy_step_key(key, "prepare-1"), FINGERPRINT)
            held = (await shards.call(1, [prepare]))[0].value
            assert isinstance(held, HoldView)
            activate = ActivateReservation(rid, held.lines)
            activation = Submission(activate, legacy_step_key(key, "activate"), FINGERPRINT)
            old_activation = (await shards.call(0, [activation]))[0].value
        again = await keyed(shards, command, key)
        placed = active(again)
        assert placed.hold_id == rid and again.replayed == (steps == 3)
        if old_activation is not None:
            assert placed == old_activation
        assert levels(shards, skus) == [(5, 1)] * 2

    run(scenario, tmp_path)


def test_a_client_key_shaped_like_a_step_key_is_its_own(tmp_path: Path) -> None:
    skus = [sku_on(0), sku_on(1)]

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        # "a:open" was the key of key "a"'s open step, and both go to shard 0 here.
        adjust = Submission(AdjustStock(skus[0], "wh", 1, "received"), "a:open")
        assert (await shards.call(0, [adjust]))[0].ok
        placed = active(await keyed(shards, cart(skus, key="a"), "a"))
        assert placed.status is HoldStatus.ACTIVE
        assert (await shards.call(0, [adjust]))[0].replayed
        assert levels(shards, skus) == [(6, 1), (5, 1)]

    run(scenario, tmp_path)


def test_derived_keys_are_never_a_client_key() -> None:
    longest = "x" * 255
    for key in ("a", "a:open", longest):
        for step in ("open", "prepare-7.2", "claim"):
            derived = step_key(key, step)
            assert derived is not None and 0 < len(derived) <= 255
            with pytest.raises(InvalidCommand):
                check_client_key(derived)
    assert step_key(longest, "open") != step_key(longest, "abort")
    assert step_key("a", "open") != step_key("a:open", "open")

    async def never(shard: int, subs: Sequence[Submission]) -> list[Outcome]:
        raise AssertionError("a refused key reaches no shard")

    command = cart([sku_on(0), sku_on(1)])
    refused = asyncio.run(place_reservation(never, PARTITION, command, key=step_key("a", "open")))
    assert isinstance(refused.value, InvalidCommand)


def test_a_commit_refused_past_the_deadline_stays_refused_after_a_restart_behind(
    tmp_path: Path,
) -> None:
    """A commit just past a cart's deadline is refused before the expiry timer runs (it runs
    every minute here); the home then restarts with its clock a minute behind."""
    skus = [sku_on(0), sku_on(1)]
    slow_timer = ShardConfig(expiry_interval_seconds=60, settle_retry_seconds=0.05)

    async def scenario(shards: Shards) -> None:
        await stock(shards, skus, 5)
        placed = active(await place_reservation(shards.call, PARTITION, cart(skus, ttl_ms=1_000)))
        rid = placed.hold_id
        shards.offset_ms[0] = 1_500
        refused = (await shards.call(0, [Submission(CommitHold(rid))]))[0]
        assert isinstance(refused.value, HoldNotActive) and refused.value.status == "expired"
        # The refusal was answered after the expiry was logged, not only computed.
        assert shards.cores[0].ledger.reservations[rid].status is HoldStatus.EXPIRED
        shards.offset_ms[0] = -60_000
        await shards.restart(0)
        again = (await shards.call(0, [Submission(CommitHold(rid))]))[0]
        assert isinstance(again.value, HoldNotActive) and again.value.status == "expired"
        await poll(lambda: levels(shards, skus) == [(5, 0)] * 2, "the expiry applied everywhere")

    run(scenario, tmp_path, slow_timer)
