"""Low-stock thresholds: `StockLow` when available crosses below, `StockRecovered` when it
crosses back, once per crossing, in the command that crossed; replay rebuilds the same state."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_actors.domain import (
    AdjustStock,
    Command,
    CommitHold,
    DomainError,
    Event,
    ExpireHolds,
    InvalidCommand,
    InvariantViolation,
    Ledger,
    LineRequest,
    ReleaseHold,
    ReserveStock,
    RestockRows,
    SetStock,
    SetThreshold,
    StockAdjusted,
    StockLow,
    StockRecovered,
    StockRestocked,
    ThresholdSet,
    ThresholdView,
    TransferStock,
)
from inventory_actors.domain.crossings import LEVELS_TOUCHED, NO_LEVELS_TOUCHED
from inventory_actors.domain.limits import ON_HAND_MAX
from inventory_actors.shard.codec import EVENT_TAGS

NOW = 1_000_000
CROSSINGS = (StockLow, StockRecovered)


def run(ledger: Ledger, command: Command) -> list[Event]:
    _, events = ledger.execute(command, NOW)
    ledger.check_invariants()
    return list(events)


def stocked(on_hand: int, threshold: int | None = None) -> Ledger:
    ledger = Ledger()
    run(ledger, SetStock("A", "berlin", on_hand))
    if threshold is not None:
        run(ledger, SetThreshold("A", "berlin", threshold))
    return ledger


def restock(mode: str, *items: tuple[str, str, int]) -> RestockRows:
    return RestockRows(
        "rj-t",
        0,
        mode,
        tuple(range(1, len(items) + 1)),
        tuple(i[0] for i in items),
        tuple(i[1] for i in items),
        tuple(i[2] for i in items),
        ("restock",) * len(items),
    )


# -- setting thresholds -----------------------------------------------------------------------


def test_a_threshold_below_available_is_set_without_an_alert() -> None:
    ledger = stocked(20)
    result, events = ledger.execute(SetThreshold("A", "berlin", 10), NOW)
    assert events == [ThresholdSet("A", "berlin", 10)]
    assert result == ThresholdView("A", "berlin", 10, 20, False)
    assert ledger.alerts() == []


def test_a_threshold_above_available_alerts_in_the_same_command() -> None:
    ledger = stocked(5)
    result, events = ledger.execute(SetThreshold("A", "berlin", 10), NOW)
    assert events == [ThresholdSet("A", "berlin", 10), StockLow("A", "berlin", 5, 10)]
    assert result == ThresholdView("A", "berlin", 10, 5, True)
    assert ledger.alerts() == [("A", "berlin", 5, 10)]


def test_a_threshold_on_a_level_never_stocked_counts_it_as_zero_available() -> None:
    ledger = Ledger()
    events = run(ledger, SetThreshold("NEW", "x", 1))
    assert events[-1] == StockLow("NEW", "x", 0, 1)
    assert "NEW" not in ledger.skus  # a threshold is not stock
    assert run(ledger, AdjustStock("NEW", "x", 1, "received"))[-1] == StockRecovered(
        "NEW", "x", 1, 1
    )


def test_a_threshold_of_zero_is_never_crossed() -> None:
    ledger = Ledger()
    assert run(ledger, SetThreshold("A", "berlin", 0)) == [ThresholdSet("A", "berlin", 0)]
    assert ledger.alerts() == []


def test_removing_the_threshold_of_a_low_level_recovers_it_with_the_removed_threshold() -> None:
    ledger = stocked(3, 10)
    events = run(ledger, SetThreshold("A", "berlin", None))
    assert events == [ThresholdSet("A", "berlin", None), StockRecovered("A", "berlin", 3, 10)]
    assert ledger.thresholds == {} and ledger.low == set()


def test_lowering_the_threshold_under_available_recovers_and_raising_it_alerts_again() -> None:
    ledger = stocked(5, 10)
    assert run(ledger, SetThreshold("A", "berlin", 4))[-1] == StockRecovered("A", "berlin", 5, 4)
    assert run(ledger, SetThreshold("A", "berlin", 6))[-1] == StockLow("A", "berlin", 5, 6)
    # Still low under another threshold: no new crossing, the alert shows the new threshold.
    assert run(ledger, SetThreshold("A", "berlin", 8)) == [ThresholdSet("A", "berlin", 8)]
    assert ledger.alerts() == [("A", "berlin", 5, 8)]


def test_setting_the_same_threshold_again_changes_nothing() -> None:
    ledger = stocked(5, 10)
    assert run(ledger, SetThreshold("A", "berlin", 10)) == []
    assert run(Ledger(), SetThreshold("A", "berlin", None)) == []


def test_a_threshold_does_not_change_the_skus_version() -> None:
    ledger = stocked(5)
    run(ledger, SetThreshold("A", "berlin", 10))
    assert ledger.skus["A"].version == 1


@pytest.mark.parametrize(
    "command",
    [
        SetThreshold("A", "berlin", -1),
        SetThreshold("A", "berlin", ON_HAND_MAX + 1),
        SetThreshold("A", "berlin", True),
        SetThreshold("A", "berlin", "10"),  # type: ignore[arg-type]
        SetThreshold("A", "berlin", 1.5),  # type: ignore[arg-type]
        SetThreshold("", "berlin", 1),
        SetThreshold("A", "no spaces", 1),
    ],
    ids=repr,
)
def test_an_invalid_threshold_is_refused_and_changes_nothing(command: SetThreshold) -> None:
    ledger = stocked(5, 3)
    before = ledger.fingerprint()
    with pytest.raises(InvalidCommand):
        ledger.execute(command, NOW)
    assert ledger.fingerprint() == before


# -- crossings ---------------------------------------------------------------------------------


def test_available_falling_below_alerts_once_then_recovers_once() -> None:
    ledger = stocked(12, 10)
    assert run(ledger, AdjustStock("A", "berlin", -1, "damaged"))[1:] == []  # 11: not below
    events = run(ledger, AdjustStock("A", "berlin", -2, "damaged"))
    assert isinstance(events[0], StockAdjusted)
    assert events[1:] == [StockLow("A", "berlin", 9, 10)]
    assert run(ledger, AdjustStock("A", "berlin", -4, "damaged"))[1:] == []  # still low
    assert run(ledger, AdjustStock("A", "berlin", 4, "received"))[1:] == []  # 9: still low
    assert run(ledger, AdjustStock("A", "berlin", 1, "received"))[1:] == [
        StockRecovered("A", "berlin", 10, 10)
    ]


def test_a_hold_that_takes_available_below_alerts_and_its_release_recovers() -> None:
    ledger = stocked(10, 8)
    placed = run(ledger, ReserveStock("h1", (LineRequest("A", 3, "berlin"),), 60_000))
    assert placed[-1] == StockLow("A", "berlin", 7, 8)
    assert run(ledger, ReleaseHold("h1"))[-1] == StockRecovered("A", "berlin", 10, 8)


def test_committing_a_hold_crosses_nothing_available_did_not_already_cross() -> None:
    ledger = stocked(10, 8)
    run(ledger, ReserveStock("h1", (LineRequest("A", 3, "berlin"),), 60_000))
    assert not any(isinstance(e, CROSSINGS) for e in run(ledger, CommitHold("h1")))
    assert ledger.alerts() == [("A", "berlin", 7, 8)]


def test_an_expired_hold_recovers_its_level() -> None:
    ledger = stocked(10, 8)
    ledger.execute(ReserveStock("h1", (LineRequest("A", 3, "berlin"),), 1_000), NOW)
    _, events = ledger.execute(ExpireHolds(10), NOW + 5_000)
    assert events[-1] == StockRecovered("A", "berlin", 10, 8)


def test_a_transfer_can_make_its_source_low_and_its_target_recover() -> None:
    ledger = stocked(10, 8)
    run(ledger, SetThreshold("A", "paris", 2))
    events = run(ledger, TransferStock("A", "berlin", "paris", 3))
    assert events[1:] == [StockLow("A", "berlin", 7, 8), StockRecovered("A", "paris", 3, 2)]


def test_a_restock_crossing_alerts_after_its_rows() -> None:
    ledger = stocked(5, 8)
    run(ledger, SetThreshold("B", "x", 1))
    events = run(ledger, restock("delta", ("A", "berlin", 4), ("C", "y", 2), ("B", "x", 1)))
    assert isinstance(events[0], StockRestocked)
    assert events[1:] == [StockRecovered("A", "berlin", 9, 8), StockRecovered("B", "x", 1, 1)]


def test_a_restock_that_dips_and_comes_back_in_one_command_crosses_nothing() -> None:
    ledger = stocked(10, 8)
    events = run(ledger, restock("set", ("A", "berlin", 2), ("A", "berlin", 10)))
    assert [type(e) for e in events] == [StockRestocked]


def test_without_thresholds_no_command_emits_crossings() -> None:
    ledger = stocked(0)
    events = run(ledger, restock("delta", ("A", "berlin", 3)))
    assert [type(e) for e in events] == [StockRestocked]


def test_every_event_type_is_known_to_change_levels_or_not() -> None:
    changing, not_changing = set(LEVELS_TOUCHED), set(NO_LEVELS_TOUCHED)
    assert not changing & not_changing
    assert changing | not_changing == set(EVENT_TAGS)


def test_a_low_set_that_drifted_from_the_thresholds_is_an_invariant_violation() -> None:
    ledger = stocked(5, 10)
    ledger.low.clear()
    with pytest.raises(InvariantViolation):
        ledger.check_invariants()


def test_thresholds_and_the_low_set_survive_a_snapshot_round_trip() -> None:
    ledger = stocked(5, 10)
    run(ledger, SetThreshold("B", "x", 0))
    rows = ledger.export_thresholds(list(ledger.thresholds))
    loaded = Ledger()
    loaded.load_sku_columns(ledger.export_sku_columns(list(ledger.skus), 0, 100)[0])
    loaded.load_thresholds(rows)
    loaded.check_invariants()
    assert loaded.fingerprint() == ledger.fingerprint()


# -- any sequence ------------------------------------------------------------------------------

SKUS = ("A", "B")
LOCATIONS = ("berlin", "paris")
HOLDS = ("h1", "h2", "h3")
skus = st.sampled_from(SKUS)
locations = st.sampled_from(LOCATIONS)
holds = st.sampled_from(HOLDS)
rows = st.lists(st.tuples(skus, locations, st.integers(-4, 8).filter(bool)), max_size=4)
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(AdjustStock, skus, locations, st.integers(-5, 6).filter(bool), st.just("other")),
    st.builds(SetStock, skus, locations, st.integers(0, 12)),
    st.builds(TransferStock, skus, locations, locations, st.integers(1, 4)),
    st.builds(
        ReserveStock,
        holds,
        st.lists(st.builds(LineRequest, skus, st.integers(1, 3), locations), min_size=1).map(tuple),
        st.just(60_000),
    ),
    st.builds(CommitHold, holds),
    st.builds(ReleaseHold, holds),
    rows.map(lambda items: restock("delta", *items)),
    rows.map(lambda items: restock("set", *((s, loc, abs(q)) for s, loc, q in items))),
    st.builds(SetThreshold, skus, locations, st.one_of(st.none(), st.integers(0, 10))),
)


def _expected_low(ledger: Ledger, key: tuple[str, str]) -> bool:
    threshold = ledger.thresholds.get(key)
    return threshold is not None and ledger.available_at(*key) < threshold


@settings(max_examples=200, deadline=None)
@given(st.lists(commands, min_size=1, max_size=40))
def test_crossings_fire_exactly_when_available_crosses_and_alternate_per_level(
    sequence: list[Command],
) -> None:
    ledger, log = Ledger(), []
    keys = [(sku, location) for sku in SKUS for location in LOCATIONS]
    history: dict[tuple[str, str], list[bool]] = {key: [] for key in keys}
    for command in sequence:
        low_before = {key: key in ledger.low for key in keys}
        try:
            _, events = ledger.execute(command, NOW)
        except DomainError:
            continue
        ledger.check_invariants()
        log.append(list(events))
        crossings = {(e.sku, e.location): e for e in events if isinstance(e, CROSSINGS)}
        assert len(crossings) == sum(isinstance(e, CROSSINGS) for e in events), "one per level"
        # The crossing events come after every change of the command.
        kinds = [isinstance(e, CROSSINGS) for e in events]
        assert kinds == sorted(kinds)
        for key in keys:
            low_after = _expected_low(ledger, key)
            assert (key in ledger.low) == low_after
            event = crossings.get(key)
            if low_after == low_before[key]:
                assert event is None, (command, event)
                continue
            assert isinstance(event, StockLow if low_after else StockRecovered), (command, event)
            assert event.available == ledger.available_at(*key)
            history[key].append(low_after)
    for key, changes in history.items():
        # Low, recovered, low, ...: never twice the same way in a row.
        assert changes == [index % 2 == 0 for index in range(len(changes))], key

    replayed = Ledger()
    for record in log:
        for logged in record:
            replayed.apply(logged, NOW)
    replayed.check_invariants()
    assert replayed.thresholds == ledger.thresholds
    assert replayed.low == ledger.low
    assert replayed.fingerprint() == ledger.fingerprint()
