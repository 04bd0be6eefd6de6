"""A shard refuses commands for SKUs and reservations it does not own, before its ledger sees
them and without writing anything; it still takes the commands of reservations across shards
that legitimately name another shard (parts, settlements, claims). A real ShardCore on an
in-memory store, with a three-shard map; the shard under test is shard 1."""

import asyncio
from typing import Any, get_args

import pytest

from inventory_actors.cluster import shard_metrics
from inventory_actors.domain import (
    AbortReservation,
    ActivateReservation,
    AdjustStock,
    ClaimKey,
    Command,
    CommitHold,
    ExpireHolds,
    ExtendHold,
    HoldLine,
    HoldStatus,
    HoldView,
    InvalidCommand,
    KeyClaimed,
    LineRequest,
    MarkSettled,
    OpenReservation,
    PrepareHold,
    PruneHolds,
    ReleaseHold,
    ReserveStock,
    RestockResult,
    RestockRows,
    SetStock,
    SetThreshold,
    SettleHold,
    SkuView,
    TransferStock,
)
from inventory_actors.observability import metric_names as names
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.errors import NotOwner
from inventory_actors.shard.ownership import UNCHECKED, Ownership
from inventory_actors.shard.partitioning import PartitionMap, new_hold_id, slot_of
from inventory_actors.shard.protocol import Submission
from persistence import MemoryShardStore
from tests.core.test_shard_core import Clock, run

PARTITION = PartitionMap.initial(3)
SHARD = 1
OTHER = 2
TTL = 60_000


def sku_on(shard: int, tag: str = "") -> str:
    """A SKU name that the map puts on `shard`."""
    return next(
        name
        for name in (f"sku-{tag}{n}" for n in range(10_000))
        if PARTITION.owner(sku=name) == shard
    )


def hold_on(shard: int, tag: str = "") -> str:
    """A hold id whose home is `shard`."""
    return new_hold_id(slot_of(sku_on(shard, tag)), tag.encode() or None)


MINE, MINE_TOO, THEIRS = sku_on(SHARD), sku_on(SHARD, "b"), sku_on(OTHER)
MY_HOLD, THEIR_HOLD = hold_on(SHARD, "h"), hold_on(OTHER, "h")


def make_core(store: MemoryShardStore) -> ShardCore:
    core = ShardCore(SHARD, lambda: store, Clock(), ShardConfig(), partition=PARTITION)
    core.start()
    return core


def restock(skus: tuple[str, ...]) -> RestockRows:
    count = len(skus)
    return RestockRows(
        "job-1",
        0,
        "delta",
        tuple(range(1, count + 1)),
        skus,
        ("berlin",) * count,
        (5,) * count,
        ("received",) * count,
    )


# (command, what the refusal names, the key it names, its owner)
MISROUTED: dict[str, tuple[Command, str, str, int]] = {
    "adjust": (AdjustStock(THEIRS, "berlin", 5, "received"), "SKU", THEIRS, OTHER),
    "set": (SetStock(THEIRS, "berlin", 5), "SKU", THEIRS, OTHER),
    "transfer": (TransferStock(THEIRS, "berlin", "paris", 1), "SKU", THEIRS, OTHER),
    "threshold": (SetThreshold(THEIRS, "berlin", 3), "SKU", THEIRS, OTHER),
    "reserve-by-hold": (
        ReserveStock(THEIR_HOLD, (LineRequest(THEIRS, 1),), TTL),
        "reservation",
        THEIR_HOLD,
        OTHER,
    ),
    # Its own hold id, but a line of another shard: a one-shard hold holds only its own SKUs.
    "reserve-by-line": (
        ReserveStock(MY_HOLD, (LineRequest(MINE, 1), LineRequest(THEIRS, 1)), TTL),
        "SKU",
        THEIRS,
        OTHER,
    ),
    "commit": (CommitHold(THEIR_HOLD), "reservation", THEIR_HOLD, OTHER),
    "release": (ReleaseHold(THEIR_HOLD), "reservation", THEIR_HOLD, OTHER),
    "extend": (ExtendHold(THEIR_HOLD, TTL), "reservation", THEIR_HOLD, OTHER),
    "open-by-hold": (
        OpenReservation(THEIR_HOLD, OTHER, (SHARD, OTHER), (), TTL, 10_000),
        "reservation",
        THEIR_HOLD,
        OTHER,
    ),
    "open-by-line": (
        OpenReservation(MY_HOLD, SHARD, (SHARD, OTHER), (LineRequest(THEIRS, 1),), TTL, 10_000),
        "SKU",
        THEIRS,
        OTHER,
    ),
    "activate": (ActivateReservation(THEIR_HOLD, ()), "reservation", THEIR_HOLD, OTHER),
    "abort": (AbortReservation(THEIR_HOLD), "reservation", THEIR_HOLD, OTHER),
    "settled": (MarkSettled(THEIR_HOLD, 0), "reservation", THEIR_HOLD, OTHER),
    # A participant's part for another home is fine (see below), not a part of another shard's
    # SKUs.
    "prepare": (
        PrepareHold(hold_on(0, "p"), (LineRequest(THEIRS, 1),), 2**60),
        "SKU",
        THEIRS,
        OTHER,
    ),
    # One row of another shard in a chunk of this shard's rows: the whole chunk is refused,
    # naming the first such row's SKU.
    "restock": (restock((MINE, MINE_TOO, THEIRS, MINE, sku_on(0))), "SKU", THEIRS, OTHER),
}


@pytest.mark.parametrize("case", MISROUTED.values(), ids=list(MISROUTED))
def test_a_misrouted_command_is_refused_writes_nothing_and_is_counted(
    case: tuple[Command, str, str, int],
) -> None:
    command, what, key, owner = case

    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store)
        [outcome] = await core.submit([Submission(command, "key-1", "print-1")])
        error = outcome.value
        assert isinstance(error, NotOwner), error
        assert (error.shard_id, error.what, error.key, error.owner) == (SHARD, what, key, owner)
        assert error.slug == "shard-misrouted"
        assert f"shard {SHARD}" in error.detail and repr(key) in error.detail
        assert not outcome.replayed and outcome.lsn is None
        # Nothing written: no log record, no idempotency record, no state.
        assert store.log == [] and store.idempotency == {}
        assert core.last_lsn == 0 and not core.ledger.skus and not core.ledger.holds
        assert not core.ledger.reservations
        assert core.counters.misrouted == 1
        assert core.counters.commands == 0
        assert core.tally == {}
        await core.stop()

    run(body)


def test_a_misrouted_command_does_not_disturb_the_others_of_its_call() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store)
        outcomes = await core.submit(
            [
                Submission(AdjustStock(MINE, "berlin", 2, "received")),
                Submission(AdjustStock(THEIRS, "berlin", 2, "received")),
                Submission(AdjustStock(MINE, "berlin", 3, "received")),
            ]
        )
        assert [type(o.value) for o in outcomes] == [SkuView, NotOwner, SkuView]
        assert [record.lsn for record in store.log] == [1, 2]
        assert core.read_skus([MINE, THEIRS])[0] is not None
        assert core.read_skus([THEIRS]) == [None]
        assert core.counters.misrouted == 1
        await core.stop()

    run(body)


def test_the_shards_own_commands_are_taken() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore())
        for command in (
            AdjustStock(MINE, "berlin", 10, "received"),
            SetStock(MINE_TOO, "berlin", 4),
            TransferStock(MINE, "berlin", "paris", 1),
            SetThreshold(MINE, "berlin", 2),
            ReserveStock(MY_HOLD, (LineRequest(MINE, 1), LineRequest(MINE_TOO, 1)), TTL),
            ExtendHold(MY_HOLD, TTL),
            CommitHold(MY_HOLD),
            ExpireHolds(100),
            PruneHolds(0, 100),
        ):
            outcome = await core.run_command(command)
            assert outcome.ok, (command, outcome)
        assert core.counters.misrouted == 0
        await core.stop()

    run(body)


def test_a_participant_takes_its_part_of_a_reservation_whose_home_is_another_shard() -> None:
    """The part names the home's hold id; its lines are this shard's SKUs. Then the home's
    decision arrives (SettleHold), also for a hold id of another shard."""
    rid = hold_on(0, "cart")

    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store)
        assert (await core.run_command(AdjustStock(MINE, "berlin", 5, "received"))).ok
        prepare = PrepareHold(rid, (LineRequest(MINE, 2),), core.clock_ms() + 10_000)
        part = await core.run_command(prepare)
        assert isinstance(part.value, HoldView), part
        assert _on_hand_and_reserved(core) == (5, 2)
        settled = await core.run_command(SettleHold(rid, HoldStatus.COMMITTED.value))
        assert isinstance(settled.value, HoldView), settled
        assert settled.value.status is HoldStatus.COMMITTED
        assert core.counters.misrouted == 0
        assert _on_hand_and_reserved(core) == (3, 0)
        assert len(store.log) == 3
        await core.stop()

    run(body)


def _on_hand_and_reserved(core: ShardCore) -> tuple[int, int]:
    view = core.read_skus([MINE])[0]
    assert view is not None
    return view.on_hand, view.reserved


def test_a_home_opens_activates_and_settles_a_reservation_with_other_shards_lines() -> None:
    """Activate carries the lines the other shards hold (their SKUs): not this shard's to
    check. MarkSettled names the other shard that applied the decision."""

    async def body() -> None:
        core = make_core(MemoryShardStore())
        assert (await core.run_command(AdjustStock(MINE, "berlin", 5, "received"))).ok
        opening = OpenReservation(
            MY_HOLD, SHARD, (SHARD, OTHER), (LineRequest(MINE, 1),), TTL, 10_000
        )
        assert isinstance((await core.run_command(opening)).value, HoldView)
        their_line = HoldLine(THEIRS, "berlin", 1)
        active = await core.run_command(ActivateReservation(MY_HOLD, (their_line,)))
        assert isinstance(active.value, HoldView), active
        assert active.value.status is HoldStatus.ACTIVE
        assert their_line in active.value.lines
        assert (await core.run_command(ReleaseHold(MY_HOLD))).ok
        assert (await core.run_command(MarkSettled(MY_HOLD, OTHER))).ok
        assert core.counters.misrouted == 0
        await core.stop()

    run(body)


def test_an_idempotency_claim_for_a_request_run_by_another_shard_is_taken() -> None:
    """A claim lands on the shard of the request's key, whatever shard runs the request."""

    async def body() -> None:
        store = MemoryShardStore()
        core = make_core(store)
        [outcome] = await core.submit([Submission(ClaimKey(OTHER), "k-claim", "print")])
        assert outcome.value == KeyClaimed(OTHER)
        assert "k-claim" in store.idempotency
        await core.stop()

    run(body)


def test_a_restock_chunk_of_the_shards_own_skus_is_applied() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore())
        skus = (MINE, MINE_TOO, MINE)
        outcome = await core.run_command(restock(skus))
        assert isinstance(outcome.value, RestockResult), outcome
        assert outcome.value.applied == 3 and outcome.value.rejects == ()
        views = core.read_skus([MINE, MINE_TOO])
        assert [view.on_hand if view else None for view in views] == [10, 5]
        await core.stop()

    run(body)


def test_fields_of_the_wrong_type_are_left_to_the_ledger() -> None:
    """The check refuses only what it can name; the ledger refuses the rest as invalid."""

    async def body() -> None:
        core = make_core(MemoryShardStore())
        for command in (
            AdjustStock(42, "berlin", 1, "received"),  # type: ignore[arg-type]
            CommitHold(None),  # type: ignore[arg-type]
            ReleaseHold("r_\ud800"),
            ReserveStock(MY_HOLD, "not lines", TTL),  # type: ignore[arg-type]
        ):
            outcome = await core.run_command(command)
            assert isinstance(outcome.value, InvalidCommand), (command, outcome)
        assert core.counters.misrouted == 0
        await core.stop()

    run(body)


def test_a_lone_engine_without_a_map_takes_every_command() -> None:
    async def body() -> None:
        core = ShardCore(SHARD, MemoryShardStore, Clock(), ShardConfig())
        core.start()
        assert core.ownership is None
        assert (await core.run_command(AdjustStock(THEIRS, "berlin", 1, "received"))).ok
        await core.stop()

    run(body)


# -- the check itself ----------------------------------------------------------------------


def test_every_kind_of_command_is_either_checked_or_deliberately_not() -> None:
    """A new kind of command must be placed in one of the two, with its reason."""
    ownership = Ownership(SHARD, PARTITION)
    kinds = set(get_args(Command))
    assert ownership.checked | UNCHECKED == kinds
    assert not ownership.checked & UNCHECKED


def test_a_shard_that_is_not_in_the_map_is_refused() -> None:
    with pytest.raises(ValueError, match="not one of"):
        Ownership(3, PARTITION)


def test_restock_rows_whose_sku_is_not_text_are_left_to_the_ledger() -> None:
    ownership = Ownership(SHARD, PARTITION)
    skus: tuple[Any, ...] = (MINE, None, ["x"], "\ud800", MINE_TOO)
    assert ownership.refusal(restock(skus)) is None
    refusal = ownership.refusal(restock((*skus, THEIRS)))
    assert isinstance(refusal, NotOwner) and refusal.key == THEIRS


def test_every_shard_takes_exactly_the_skus_and_holds_the_map_gives_it() -> None:
    checks = [Ownership(shard, PARTITION) for shard in range(PARTITION.shard_count)]
    for n in range(300):
        sku, hold = f"sku-{n}", new_hold_id(n * 13 % 4096)
        adjust, commit = AdjustStock(sku, "berlin", 1, "received"), CommitHold(hold)
        assert [c.refusal(adjust) is None for c in checks].count(True) == 1
        assert checks[PARTITION.owner(sku=sku)].refusal(adjust) is None
        assert checks[PARTITION.owner(hold=hold)].refusal(commit) is None


# -- the metric ----------------------------------------------------------------------------


class FakeMetric:
    def __init__(self) -> None:
        self.total = 0.0

    def set_default_tags(self, tags: dict[str, str]) -> None:
        pass

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        self.total += value

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        pass

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        pass


def test_misrouted_commands_reach_the_shards_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    made: dict[str, FakeMetric] = {}

    def fake_metric(spec: names.MetricSpec) -> FakeMetric:
        return made.setdefault(spec.name, FakeMetric())

    monkeypatch.setattr(shard_metrics, "make_metric", fake_metric)

    async def body() -> None:
        core = make_core(MemoryShardStore())
        metrics = shard_metrics.ShardMetrics(SHARD)
        assert names.SHARD_MISROUTED in names.SHARD_METRICS
        wrong = Submission(AdjustStock(THEIRS, "berlin", 1, "received"))
        await asyncio.gather(core.submit([wrong, wrong]), core.submit([wrong]))
        metrics.export(core)
        assert made[names.SHARD_MISROUTED.name].total == 3
        metrics.export(core)  # the exporter adds increments, not the total again
        assert made[names.SHARD_MISROUTED.name].total == 3
        await core.stop()

    run(body)
