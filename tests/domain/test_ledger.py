"""The ledger, command by command: what each one changes, and that a refusal changes nothing."""

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_actors.domain import (
    AdjustStock,
    ClaimKey,
    Command,
    CommitHold,
    DomainError,
    Event,
    ExpireHolds,
    ExpiryResult,
    ExtendHold,
    HoldExists,
    HoldExtended,
    HoldFinished,
    HoldLine,
    HoldNotActive,
    HoldNotFound,
    HoldPlaced,
    HoldsPruned,
    HoldStatus,
    HoldView,
    InsufficientStock,
    InvalidCommand,
    InvariantViolation,
    KeyClaimed,
    Ledger,
    LevelImage,
    LineRequest,
    PruneHolds,
    PruneResult,
    ReleaseHold,
    ReserveStock,
    Result,
    SetStock,
    Shortage,
    SkuView,
    StockAdjusted,
    StockSet,
    StockTransferred,
    TransferStock,
    VersionConflict,
    limits,
    reservations,
)

TTL = 60_000
T0 = 1_000_000


def run(ledger: Ledger, command: Command, now_ms: int = T0) -> tuple[Result, list[Event]]:
    """Execute and check every invariant afterwards."""
    outcome = ledger.execute(command, now_ms)
    ledger.check_invariants()
    return outcome


def refuse(
    ledger: Ledger, command: Command, error: type[DomainError], now_ms: int = T0
) -> DomainError:
    """Execute a command that must be refused; the state must not change at all."""
    before = ledger.fingerprint()
    with pytest.raises(error) as caught:
        ledger.execute(command, now_ms)
    assert ledger.fingerprint() == before
    ledger.check_invariants()
    return caught.value


def stocked(levels: dict[tuple[str, str], int]) -> Ledger:
    ledger = Ledger()
    for (sku, location), on_hand in levels.items():
        run(ledger, AdjustStock(sku, location, on_hand, "received"), 0)
    return ledger


def sku_view(ledger: Ledger, sku: str) -> SkuView:
    view = ledger.sku_view(sku)
    assert view is not None
    return view


def level(ledger: Ledger, sku: str, location: str) -> tuple[int, int]:
    """(on_hand, reserved) of one SKU-location."""
    for loc in sku_view(ledger, sku).locations:
        if loc.location == location:
            return loc.on_hand, loc.reserved
    raise AssertionError(f"{sku}@{location} has no level")


def hold_view(ledger: Ledger, hold_id: str, now_ms: int = T0) -> HoldView:
    view = ledger.hold_view(hold_id, now_ms)
    assert view is not None
    return view


def reserve(
    ledger: Ledger,
    hold_id: str,
    *lines: LineRequest,
    now_ms: int = T0,
    ttl_ms: int = TTL,
) -> HoldPlaced:
    result, events = run(ledger, ReserveStock(hold_id, tuple(lines), ttl_ms), now_ms)
    assert isinstance(result, HoldView)
    assert result.status is HoldStatus.ACTIVE
    (event,) = events
    assert isinstance(event, HoldPlaced)
    return event


# -- adjust ------------------------------------------------------------------------------------


def test_receiving_stock_creates_the_level_at_version_one() -> None:
    ledger = Ledger()
    result, events = run(ledger, AdjustStock("A", "berlin", 5, "received", "po-1"))
    assert isinstance(result, SkuView)
    assert result.sku == "A" and result.version == 1
    assert result.on_hand == 5 and result.available == 5 and result.reserved == 0
    assert events == [
        StockAdjusted(LevelImage("A", "berlin", 5, 0, 1), 5, "received", "po-1"),
    ]


def test_a_negative_adjustment_removes_units_and_raises_the_version() -> None:
    ledger = stocked({("A", "berlin"): 10})
    result, events = run(ledger, AdjustStock("A", "berlin", -4, "damaged"))
    assert isinstance(result, SkuView)
    assert result.version == 2
    assert level(ledger, "A", "berlin") == (6, 0)
    assert events == [StockAdjusted(LevelImage("A", "berlin", 6, 0, 2), -4, "damaged", None)]


def test_removing_units_that_are_held_is_insufficient_stock_and_changes_nothing() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 7, "berlin"))
    error = refuse(ledger, AdjustStock("A", "berlin", -4, "damaged"), InsufficientStock)
    assert isinstance(error, InsufficientStock)
    assert error.shortages == (Shortage("A", "berlin", 4, 3),)
    assert level(ledger, "A", "berlin") == (10, 7)


def test_removing_exactly_the_available_units_leaves_only_the_held_ones() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 7, "berlin"))
    run(ledger, AdjustStock("A", "berlin", -3, "shrinkage"))
    assert level(ledger, "A", "berlin") == (7, 7)
    assert sku_view(ledger, "A").available == 0


def test_removing_units_from_an_unknown_level_is_insufficient_stock() -> None:
    ledger = Ledger()
    error = refuse(ledger, AdjustStock("A", "berlin", -1, "damaged"), InsufficientStock)
    assert isinstance(error, InsufficientStock)
    assert error.shortages == (Shortage("A", "berlin", 1, 0),)
    assert ledger.sku_view("A") is None


@pytest.mark.parametrize(
    "command",
    [
        AdjustStock("A", "berlin", 0, "received"),
        AdjustStock("A", "berlin", limits.DELTA_MAX + 1, "received"),
        AdjustStock("A", "berlin", -limits.DELTA_MAX - 1, "received"),
        AdjustStock("A", "berlin", 1, "found-it"),
        AdjustStock("A", "berlin", 1, ""),
        AdjustStock("", "berlin", 1, "received"),
        AdjustStock("A", "", 1, "received"),
        AdjustStock("A B", "berlin", 1, "received"),
        AdjustStock("A", "ber lin", 1, "received"),
        AdjustStock("Ä", "berlin", 1, "received"),
        AdjustStock("A" * 129, "berlin", 1, "received"),
        AdjustStock("A", "berlin", 1, "received", "r" * (limits.REFERENCE_LENGTH_MAX + 1)),
        AdjustStock("A", "berlin", 1.5, "received"),  # type: ignore[arg-type]
        AdjustStock("A", "berlin", "1", "received"),  # type: ignore[arg-type]
        AdjustStock(7, "berlin", 1, "received"),  # type: ignore[arg-type]
    ],
    ids=repr,
)
def test_a_malformed_adjustment_is_an_invalid_command_and_changes_nothing(
    command: AdjustStock,
) -> None:
    ledger = stocked({("A", "berlin"): 10})
    refuse(ledger, command, InvalidCommand)


def test_every_reason_of_the_contract_is_accepted() -> None:
    ledger = stocked({("A", "berlin"): 100})
    for reason in sorted(limits.REASONS):
        run(ledger, AdjustStock("A", "berlin", 1, reason))
    assert level(ledger, "A", "berlin") == (100 + len(limits.REASONS), 0)


def test_an_id_of_128_allowed_characters_is_accepted() -> None:
    sku = ("Az09._:/-" * 15)[:128]
    ledger = Ledger()
    run(ledger, AdjustStock(sku, "x", 1, "received"))
    assert sku_view(ledger, sku).on_hand == 1


def test_a_bool_delta_is_an_invalid_command() -> None:
    ledger = stocked({("A", "berlin"): 10})
    refuse(ledger, AdjustStock("A", "berlin", True, "received"), InvalidCommand)


@pytest.mark.parametrize("sku", ["A\n", "A" * 128 + "\n"])
def test_an_id_ending_in_a_newline_is_an_invalid_command(sku: str) -> None:
    refuse(Ledger(), AdjustStock(sku, "berlin", 1, "received"), InvalidCommand)


def test_the_on_hand_ceiling_of_a_level_may_be_reached_but_not_passed() -> None:
    ledger = Ledger()
    run(ledger, SetStock("A", "berlin", limits.ON_HAND_MAX - 1))
    run(ledger, AdjustStock("A", "berlin", 1, "received"))
    assert level(ledger, "A", "berlin") == (limits.ON_HAND_MAX, 0)
    refuse(ledger, AdjustStock("A", "berlin", 1, "received"), InvalidCommand)


def test_an_adjustment_at_the_expected_version_applies() -> None:
    ledger = stocked({("A", "berlin"): 10})
    result, _ = run(ledger, AdjustStock("A", "berlin", 1, "received", expected_version=1))
    assert isinstance(result, SkuView) and result.version == 2


def test_an_adjustment_at_another_version_is_a_version_conflict_and_changes_nothing() -> None:
    ledger = stocked({("A", "berlin"): 10})
    error = refuse(
        ledger, AdjustStock("A", "berlin", 1, "received", expected_version=5), VersionConflict
    )
    assert isinstance(error, VersionConflict)
    assert (error.sku, error.expected, error.actual) == ("A", 5, 1)


def test_an_unknown_sku_is_at_version_zero() -> None:
    ledger = Ledger()
    refuse(ledger, AdjustStock("A", "x", 1, "received", expected_version=1), VersionConflict)
    result, _ = run(ledger, AdjustStock("A", "x", 1, "received", expected_version=0))
    assert isinstance(result, SkuView) and result.version == 1


# -- set ---------------------------------------------------------------------------------------


def test_a_count_sets_on_hand_and_records_what_was_there_before() -> None:
    ledger = stocked({("A", "berlin"): 10})
    result, events = run(ledger, SetStock("A", "berlin", 3, reference="count-7"))
    assert isinstance(result, SkuView) and result.on_hand == 3 and result.version == 2
    assert events == [StockSet(LevelImage("A", "berlin", 3, 0, 2), 10, "cycle_count", "count-7")]


def test_a_count_of_zero_creates_an_empty_level() -> None:
    ledger = Ledger()
    run(ledger, SetStock("A", "berlin", 0))
    assert level(ledger, "A", "berlin") == (0, 0)
    assert sku_view(ledger, "A").version == 1


def test_a_count_below_the_held_units_is_insufficient_stock_and_changes_nothing() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 6, "berlin"))
    error = refuse(ledger, SetStock("A", "berlin", 5), InsufficientStock)
    assert isinstance(error, InsufficientStock)
    assert error.shortages == (Shortage("A", "berlin", 6, 5),)
    run(ledger, SetStock("A", "berlin", 6))
    assert level(ledger, "A", "berlin") == (6, 6)


@pytest.mark.parametrize(
    "command",
    [
        SetStock("A", "berlin", -1),
        SetStock("A", "berlin", limits.ON_HAND_MAX + 1),
        SetStock("A", "berlin", 1, reason="stolen"),
        SetStock("A", "", 1),
        SetStock("A", "berlin", 2.0),  # type: ignore[arg-type]
    ],
    ids=repr,
)
def test_a_malformed_count_is_an_invalid_command(command: SetStock) -> None:
    refuse(stocked({("A", "berlin"): 10}), command, InvalidCommand)


def test_a_count_at_another_version_is_a_version_conflict() -> None:
    ledger = stocked({("A", "berlin"): 10})
    refuse(ledger, SetStock("A", "berlin", 1, expected_version=0), VersionConflict)


# -- transfer ----------------------------------------------------------------------------------


def test_a_transfer_moves_units_in_one_event_at_one_new_version() -> None:
    ledger = stocked({("A", "berlin"): 10})
    result, events = run(ledger, TransferStock("A", "berlin", "paris", 4, "move-1"))
    assert isinstance(result, SkuView)
    assert result.version == 2 and result.on_hand == 10
    assert events == [
        StockTransferred(
            LevelImage("A", "berlin", 6, 0, 2), LevelImage("A", "paris", 4, 0, 2), 4, "move-1"
        )
    ]


def test_a_transfer_can_only_move_available_units() -> None:
    ledger = stocked({("A", "berlin"): 10, ("A", "paris"): 1})
    reserve(ledger, "h1", LineRequest("A", 8, "berlin"))
    error = refuse(ledger, TransferStock("A", "berlin", "paris", 3), InsufficientStock)
    assert isinstance(error, InsufficientStock)
    assert error.shortages == (Shortage("A", "berlin", 3, 2),)
    run(ledger, TransferStock("A", "berlin", "paris", 2))
    assert level(ledger, "A", "berlin") == (8, 8)
    assert level(ledger, "A", "paris") == (3, 0)


def test_a_transfer_from_an_unknown_level_is_insufficient_stock() -> None:
    ledger = stocked({("A", "berlin"): 10})
    refuse(ledger, TransferStock("A", "rome", "berlin", 1), InsufficientStock)


@pytest.mark.parametrize(
    "command",
    [
        TransferStock("A", "berlin", "berlin", 1),
        TransferStock("A", "berlin", "paris", 0),
        TransferStock("A", "berlin", "paris", -1),
        TransferStock("A", "berlin", "paris", limits.QUANTITY_MAX + 1),
        TransferStock("A", "berlin", "paris", True),
        TransferStock("A", "berlin", "", 1),
        TransferStock("A", "", "paris", 1),
    ],
    ids=repr,
)
def test_a_malformed_transfer_is_an_invalid_command(command: TransferStock) -> None:
    refuse(stocked({("A", "berlin"): 10}), command, InvalidCommand)


def test_a_transfer_that_would_pass_the_ceiling_of_the_target_is_refused() -> None:
    ledger = Ledger()
    run(ledger, SetStock("A", "berlin", limits.ON_HAND_MAX))
    run(ledger, SetStock("A", "paris", 5))
    refuse(ledger, TransferStock("A", "paris", "berlin", 1), InvalidCommand)


def test_a_transfer_at_another_version_is_a_version_conflict() -> None:
    ledger = stocked({("A", "berlin"): 10})
    refuse(ledger, TransferStock("A", "berlin", "paris", 1, None, 7), VersionConflict)


# -- reserve -----------------------------------------------------------------------------------


def test_a_hold_on_the_last_unit_leaves_nothing_available() -> None:
    ledger = stocked({("A", "berlin"): 1})
    event = reserve(ledger, "h1", LineRequest("A", 1, "berlin"))
    assert event == HoldPlaced(
        "h1",
        (HoldLine("A", "berlin", 1),),
        T0 + TTL,
        None,
        (LevelImage("A", "berlin", 1, 1, 2),),
    )
    assert sku_view(ledger, "A").available == 0
    refuse(ledger, ReserveStock("h2", (LineRequest("A", 1, "berlin"),), TTL), InsufficientStock)


def test_a_hold_answers_with_its_view() -> None:
    ledger = stocked({("A", "berlin"): 5})
    result, _ = run(ledger, ReserveStock("h1", (LineRequest("A", 2),), TTL, "cart-9"))
    assert result == HoldView(
        "h1", HoldStatus.ACTIVE, (HoldLine("A", "berlin", 2),), T0 + TTL, "cart-9", T0, None
    )
    assert hold_view(ledger, "h1") == result


def test_lines_of_one_sku_and_location_are_summed_before_checking() -> None:
    ledger = stocked({("A", "berlin"): 5})
    refuse(
        ledger,
        ReserveStock("h1", (LineRequest("A", 3, "berlin"), LineRequest("A", 3, "berlin")), TTL),
        InsufficientStock,
    )
    event = reserve(ledger, "h1", LineRequest("A", 2, "berlin"), LineRequest("A", 3, "berlin"))
    assert event.lines == (HoldLine("A", "berlin", 5),)
    assert event.levels == (LevelImage("A", "berlin", 5, 5, 2),)


def test_a_line_without_location_takes_the_location_with_most_available() -> None:
    ledger = stocked({("A", "berlin"): 3, ("A", "paris"): 8, ("A", "rome"): 5})
    event = reserve(ledger, "h1", LineRequest("A", 2))
    assert event.lines == (HoldLine("A", "paris", 2),)


def test_held_units_do_not_count_when_choosing_a_location() -> None:
    ledger = stocked({("A", "berlin"): 6, ("A", "paris"): 8})
    reserve(ledger, "h0", LineRequest("A", 4, "paris"))
    event = reserve(ledger, "h1", LineRequest("A", 1))
    assert event.lines == (HoldLine("A", "berlin", 1),)


def test_a_tie_between_locations_goes_to_the_name_sorting_first() -> None:
    ledger = stocked({("A", "rome"): 5, ("A", "berlin"): 5, ("A", "paris"): 5})
    event = reserve(ledger, "h1", LineRequest("A", 5))
    assert event.lines == (HoldLine("A", "berlin", 5),)


def test_a_line_without_location_is_served_after_the_explicit_lines_of_its_sku() -> None:
    ledger = stocked({("A", "berlin"): 10, ("A", "paris"): 7})
    event = reserve(ledger, "h1", LineRequest("A", 5, "berlin"), LineRequest("A", 6))
    assert sorted(event.lines) == [HoldLine("A", "berlin", 5), HoldLine("A", "paris", 6)]


def test_a_line_without_location_is_served_whole_from_one_location() -> None:
    ledger = stocked({("A", "berlin"): 4, ("A", "paris"): 4})
    error = refuse(ledger, ReserveStock("h1", (LineRequest("A", 5),), TTL), InsufficientStock)
    assert isinstance(error, InsufficientStock)
    assert error.shortages == (Shortage("A", None, 5, 4),)


def test_lines_without_location_of_one_sku_are_summed() -> None:
    ledger = stocked({("A", "berlin"): 4, ("A", "paris"): 6})
    event = reserve(ledger, "h1", LineRequest("A", 2), LineRequest("A", 3))
    assert event.lines == (HoldLine("A", "paris", 5),)


def test_a_shortage_names_every_short_line_with_requested_and_available() -> None:
    ledger = stocked({("A", "berlin"): 2, ("B", "berlin"): 10, ("C", "paris"): 1})
    error = refuse(
        ledger,
        ReserveStock(
            "h1",
            (
                LineRequest("A", 3, "berlin"),
                LineRequest("B", 4, "berlin"),
                LineRequest("C", 2),
                LineRequest("D", 1, "berlin"),
                LineRequest("E", 1),
            ),
            TTL,
        ),
        InsufficientStock,
    )
    assert isinstance(error, InsufficientStock)
    assert set(error.shortages) == {
        Shortage("A", "berlin", 3, 2),
        Shortage("C", None, 2, 1),
        Shortage("D", "berlin", 1, 0),
        Shortage("E", None, 1, 0),
    }
    assert len(error.shortages) == 4


def test_an_unknown_sku_has_nothing_available() -> None:
    ledger = Ledger()
    for lines in ((LineRequest("X", 1),), (LineRequest("X", 1, "berlin"),)):
        error = refuse(ledger, ReserveStock("h1", lines, TTL), InsufficientStock)
        assert isinstance(error, InsufficientStock)
        assert [s.available for s in error.shortages] == [0]


def test_a_hold_is_placed_on_every_line_or_on_none() -> None:
    ledger = stocked({("A", "berlin"): 5, ("B", "berlin"): 1})
    refuse(
        ledger,
        ReserveStock("h1", (LineRequest("A", 5, "berlin"), LineRequest("B", 2, "berlin")), TTL),
        InsufficientStock,
    )
    assert sku_view(ledger, "A").available == 5
    assert ledger.hold_view("h1", T0) is None


def test_a_hold_over_several_skus_raises_each_version_once() -> None:
    ledger = stocked({("A", "berlin"): 5, ("A", "paris"): 5, ("B", "berlin"): 5})
    event = reserve(
        ledger,
        "h1",
        LineRequest("A", 1, "berlin"),
        LineRequest("A", 1, "paris"),
        LineRequest("B", 1, "berlin"),
        LineRequest("A", 1, "berlin"),
    )
    assert sku_view(ledger, "A").version == 3
    assert sku_view(ledger, "B").version == 2
    assert sorted(event.levels) == [
        LevelImage("A", "berlin", 5, 2, 3),
        LevelImage("A", "paris", 5, 1, 3),
        LevelImage("B", "berlin", 5, 1, 2),
    ]


def test_placing_a_hold_twice_is_hold_exists_and_changes_nothing() -> None:
    ledger = stocked({("A", "berlin"): 5})
    reserve(ledger, "h1", LineRequest("A", 1))
    error = refuse(ledger, ReserveStock("h1", (LineRequest("A", 1),), TTL), HoldExists)
    assert isinstance(error, HoldExists) and error.hold_id == "h1"


def test_a_finished_hold_id_cannot_be_placed_again_until_it_is_pruned() -> None:
    ledger = stocked({("A", "berlin"): 5})
    reserve(ledger, "h1", LineRequest("A", 1))
    run(ledger, ReleaseHold("h1"), T0 + 1)
    refuse(ledger, ReserveStock("h1", (LineRequest("A", 1),), TTL), HoldExists, T0 + 2)
    run(ledger, PruneHolds(T0 + 2, 10), T0 + 2)
    reserve(ledger, "h1", LineRequest("A", 2), now_ms=T0 + 3)
    assert hold_view(ledger, "h1", T0 + 3).lines == (HoldLine("A", "berlin", 2),)


def test_a_hold_has_one_to_a_hundred_lines() -> None:
    ledger = stocked({("A", "berlin"): 1000})
    refuse(ledger, ReserveStock("h0", (), TTL), InvalidCommand)
    many = tuple(LineRequest("A", 1, "berlin") for _ in range(limits.LINES_PER_HOLD_MAX + 1))
    refuse(ledger, ReserveStock("h0", many, TTL), InvalidCommand)
    event = reserve(ledger, "h1", *many[:-1])
    assert event.lines == (HoldLine("A", "berlin", 100),)


@pytest.mark.parametrize("ttl_ms", [limits.TTL_MS_MIN - 1, limits.TTL_MS_MAX + 1, 0, -1000])
def test_a_hold_ttl_outside_the_limits_is_an_invalid_command(ttl_ms: int) -> None:
    ledger = stocked({("A", "berlin"): 10})
    refuse(ledger, ReserveStock("h1", (LineRequest("A", 1),), ttl_ms), InvalidCommand)


@pytest.mark.parametrize("ttl_ms", [limits.TTL_MS_MIN, limits.TTL_MS_MAX])
def test_a_hold_ttl_at_the_limits_is_accepted(ttl_ms: int) -> None:
    ledger = stocked({("A", "berlin"): 10})
    event = reserve(ledger, "h1", LineRequest("A", 1), ttl_ms=ttl_ms)
    assert event.expires_at_ms == T0 + ttl_ms


@pytest.mark.parametrize(
    "command",
    [
        ReserveStock("", (LineRequest("A", 1),), TTL),
        ReserveStock("h" * (limits.HOLD_ID_LENGTH_MAX + 1), (LineRequest("A", 1),), TTL),
        ReserveStock("h1", (LineRequest("A", 0),), TTL),
        ReserveStock("h1", (LineRequest("A", -1),), TTL),
        ReserveStock("h1", (LineRequest("A", limits.QUANTITY_MAX + 1),), TTL),
        ReserveStock("h1", (LineRequest("A", 1, ""),), TTL),
        ReserveStock("h1", (LineRequest("A B", 1),), TTL),
        ReserveStock("h1", (LineRequest("A", 1), LineRequest("A", 0)), TTL),
        ReserveStock("h1", (LineRequest("A", 1), LineRequest("", 1)), TTL),
        ReserveStock("h1", (LineRequest("A", 1),), TTL, "r" * 257),
    ],
    ids=repr,
)
def test_a_malformed_hold_is_an_invalid_command(command: ReserveStock) -> None:
    refuse(stocked({("A", "berlin"): 10}), command, InvalidCommand)


def test_a_hold_id_of_64_characters_is_accepted() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h" * limits.HOLD_ID_LENGTH_MAX, LineRequest("A", 1))
    assert ledger.hold_view("h" * 64, T0) is not None


# -- commit, release, extend -------------------------------------------------------------------


def test_committing_a_hold_takes_its_units_off_on_hand_and_reserved() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3, "berlin"))
    result, events = run(ledger, CommitHold("h1"), T0 + 5)
    assert isinstance(result, HoldView)
    assert result.status is HoldStatus.COMMITTED and result.finished_at_ms == T0 + 5
    assert events == [
        HoldFinished(
            "h1",
            HoldStatus.COMMITTED,
            (LevelImage("A", "berlin", 7, 0, 3),),
            (HoldLine("A", "berlin", 3),),
        )
    ]
    assert level(ledger, "A", "berlin") == (7, 0)


def test_committing_twice_answers_the_same_and_changes_nothing() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3, "berlin"))
    first, _ = run(ledger, CommitHold("h1"), T0 + 5)
    before = ledger.fingerprint()
    second, events = run(ledger, CommitHold("h1"), T0 + 9)
    assert events == []
    assert second == first
    assert ledger.fingerprint() == before


def test_committing_a_released_hold_is_hold_not_active() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3))
    run(ledger, ReleaseHold("h1"), T0 + 1)
    error = refuse(ledger, CommitHold("h1"), HoldNotActive, T0 + 2)
    assert isinstance(error, HoldNotActive) and error.status == "released"


def test_releasing_a_hold_makes_its_units_available_again() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3, "berlin"))
    result, events = run(ledger, ReleaseHold("h1"), T0 + 1)
    assert isinstance(result, HoldView) and result.status is HoldStatus.RELEASED
    assert events == [
        HoldFinished(
            "h1",
            HoldStatus.RELEASED,
            (LevelImage("A", "berlin", 10, 0, 3),),
            (HoldLine("A", "berlin", 3),),
        )
    ]
    assert sku_view(ledger, "A").available == 10


def test_releasing_twice_is_harmless() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3))
    run(ledger, ReleaseHold("h1"), T0 + 1)
    before = ledger.fingerprint()
    result, events = run(ledger, ReleaseHold("h1"), T0 + 2)
    assert events == [] and ledger.fingerprint() == before
    assert isinstance(result, HoldView) and result.status is HoldStatus.RELEASED


def test_releasing_a_committed_hold_is_hold_not_active() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3))
    run(ledger, CommitHold("h1"), T0 + 1)
    refuse(ledger, ReleaseHold("h1"), HoldNotActive, T0 + 2)


@pytest.mark.parametrize(
    "command",
    [CommitHold("nope"), ReleaseHold("nope"), ExtendHold("nope", TTL)],
    ids=repr,
)
def test_an_unknown_hold_is_hold_not_found(command: Command) -> None:
    error = refuse(stocked({("A", "berlin"): 1}), command, HoldNotFound)
    assert isinstance(error, HoldNotFound) and error.hold_id == "nope"


@pytest.mark.parametrize(
    "command", [CommitHold(""), ReleaseHold("x" * 65), ExtendHold("", TTL)], ids=repr
)
def test_a_malformed_hold_id_is_an_invalid_command(command: Command) -> None:
    refuse(Ledger(), command, InvalidCommand)


@pytest.mark.parametrize(
    "finish", [CommitHold("h1"), ReleaseHold("h1"), ExtendHold("h1", TTL)], ids=repr
)
def test_an_active_hold_past_its_expiry_counts_as_expired(finish: Command) -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3))
    assert hold_view(ledger, "h1", T0 + TTL - 1).status is HoldStatus.ACTIVE
    assert hold_view(ledger, "h1", T0 + TTL).status is HoldStatus.EXPIRED
    error = refuse(ledger, finish, HoldNotActive, T0 + TTL)
    assert isinstance(error, HoldNotActive) and error.status == "expired"


def test_a_hold_can_be_committed_one_millisecond_before_its_expiry() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3))
    result, _ = run(ledger, CommitHold("h1"), T0 + TTL - 1)
    assert isinstance(result, HoldView) and result.status is HoldStatus.COMMITTED


def test_extending_a_hold_measures_the_new_ttl_from_now() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3))
    result, events = run(ledger, ExtendHold("h1", 5_000), T0 + 50_000)
    assert events == [HoldExtended("h1", T0 + 55_000)]
    assert isinstance(result, HoldView) and result.expires_at_ms == T0 + 55_000
    # Extending can shorten a hold: the new expiry is what counts.
    assert hold_view(ledger, "h1", T0 + 55_000).status is HoldStatus.EXPIRED
    result, _ = run(ledger, ExpireHolds(10), T0 + 55_000)
    assert result == ExpiryResult(1)


def test_an_extended_hold_expires_at_its_new_expiry_not_its_old_one() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3))
    run(ledger, ExtendHold("h1", 120_000), T0 + 30_000)
    result, events = run(ledger, ExpireHolds(10), T0 + TTL)
    assert result == ExpiryResult(0) and events == []
    result, _ = run(ledger, ExpireHolds(10), T0 + 150_000)
    assert result == ExpiryResult(1)


@pytest.mark.parametrize("ttl_ms", [limits.TTL_MS_MIN - 1, limits.TTL_MS_MAX + 1])
def test_an_extension_outside_the_ttl_limits_is_an_invalid_command(ttl_ms: int) -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3))
    refuse(ledger, ExtendHold("h1", ttl_ms), InvalidCommand)


def test_a_finished_hold_cannot_be_extended() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 3))
    run(ledger, CommitHold("h1"), T0 + 1)
    refuse(ledger, ExtendHold("h1", TTL), HoldNotActive, T0 + 2)


# -- expire and prune --------------------------------------------------------------------------


def test_expiry_finishes_only_the_holds_that_are_due() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "early", LineRequest("A", 1), ttl_ms=10_000)
    reserve(ledger, "late", LineRequest("A", 2), ttl_ms=20_000)
    result, events = run(ledger, ExpireHolds(100), T0 + 10_000)
    assert result == ExpiryResult(1)
    assert events == [
        HoldFinished(
            "early",
            HoldStatus.EXPIRED,
            (LevelImage("A", "berlin", 10, 2, 4),),
            (HoldLine("A", "berlin", 1),),
        )
    ]
    assert hold_view(ledger, "late", T0 + 10_000).status is HoldStatus.ACTIVE
    assert level(ledger, "A", "berlin") == (10, 2)


def test_expiry_finishes_at_most_its_limit() -> None:
    ledger = stocked({("A", "berlin"): 10})
    for index in range(5):
        reserve(ledger, f"h{index}", LineRequest("A", 1), ttl_ms=1_000 + index)
    result, _ = run(ledger, ExpireHolds(3), T0 + 10_000)
    assert result == ExpiryResult(3)
    statuses = [ledger.holds[f"h{i}"].status for i in range(5)]
    assert statuses.count(HoldStatus.EXPIRED) == 3
    assert ledger.holds["h0"].status is HoldStatus.EXPIRED
    result, _ = run(ledger, ExpireHolds(3), T0 + 10_000)
    assert result == ExpiryResult(2)
    assert ledger.active_hold_count == 0
    assert run(ledger, ExpireHolds(0), T0 + 10_000)[0] == ExpiryResult(0)


def test_expiry_skips_holds_already_committed() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 1))
    reserve(ledger, "h2", LineRequest("A", 1))
    run(ledger, CommitHold("h1"), T0 + 1)
    result, _ = run(ledger, ExpireHolds(10), T0 + TTL)
    assert result == ExpiryResult(1)
    assert ledger.holds["h1"].status is HoldStatus.COMMITTED
    assert ledger.next_expiry_ms() is None


def test_an_expired_hold_can_be_released_and_committed_no_more() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 1))
    run(ledger, ExpireHolds(10), T0 + TTL)
    refuse(ledger, ReleaseHold("h1"), HoldNotActive, T0 + TTL)
    refuse(ledger, CommitHold("h1"), HoldNotActive, T0 + TTL)


def test_pruning_forgets_only_holds_finished_before_the_cutoff() -> None:
    ledger = stocked({("A", "berlin"): 10})
    for index in range(4):
        reserve(ledger, f"h{index}", LineRequest("A", 1))
    run(ledger, CommitHold("h0"), T0 + 10)
    run(ledger, ReleaseHold("h1"), T0 + 20)
    run(ledger, ReleaseHold("h2"), T0 + 30)
    result, events = run(ledger, PruneHolds(T0 + 30, 100), T0 + 40)
    assert result == PruneResult(2)
    assert events == [HoldsPruned(("h0", "h1"))]
    assert set(ledger.holds) == {"h2", "h3"}


def test_pruning_forgets_at_most_its_limit_and_never_an_active_hold() -> None:
    ledger = stocked({("A", "berlin"): 10})
    for index in range(4):
        reserve(ledger, f"h{index}", LineRequest("A", 1))
    for index in range(3):
        run(ledger, ReleaseHold(f"h{index}"), T0 + 10 + index)
    result, _ = run(ledger, PruneHolds(T0 + 100, 2), T0 + 100)
    assert result == PruneResult(2)
    assert set(ledger.holds) == {"h2", "h3"}
    result, _ = run(ledger, PruneHolds(T0 + 100, 10), T0 + 100)
    assert result == PruneResult(1)
    assert set(ledger.holds) == {"h3"}


def test_pruning_nothing_emits_no_event() -> None:
    ledger = stocked({("A", "berlin"): 10})
    reserve(ledger, "h1", LineRequest("A", 1))
    result, events = run(ledger, PruneHolds(T0 + 1_000_000, 10), T0)
    assert result == PruneResult(0) and events == []
    assert "h1" in ledger.holds


# -- versions, errors and the unknown ----------------------------------------------------------


def test_each_command_raises_the_version_of_each_sku_it_touches_once() -> None:
    ledger = stocked({("A", "berlin"): 10, ("B", "paris"): 10})
    steps: list[tuple[Command, dict[str, int]]] = [
        (AdjustStock("A", "berlin", 1, "received"), {"A": 2, "B": 1}),
        (SetStock("B", "paris", 9), {"A": 2, "B": 2}),
        (TransferStock("A", "berlin", "paris", 2), {"A": 3, "B": 2}),
        (
            ReserveStock(
                "h1",
                (LineRequest("A", 1, "berlin"), LineRequest("A", 1, "paris"), LineRequest("B", 1)),
                TTL,
            ),
            {"A": 4, "B": 3},
        ),
        (ExtendHold("h1", TTL), {"A": 4, "B": 3}),
        (CommitHold("h1"), {"A": 5, "B": 4}),
    ]
    for command, versions in steps:
        run(ledger, command)
        assert {sku: sku_view(ledger, sku).version for sku in versions} == versions


def test_an_unknown_command_is_an_invalid_command() -> None:
    refuse(Ledger(), ("adjust", "A"), InvalidCommand)  # type: ignore[arg-type]


def test_a_command_with_a_line_of_the_wrong_shape_is_an_invalid_command() -> None:
    ledger = stocked({("A", "berlin"): 10})
    refuse(ledger, ReserveStock("h1", ("A",), TTL), InvalidCommand)  # type: ignore[arg-type]
    refuse(ledger, ReserveStock("h1", (1, 2), TTL), InvalidCommand)  # type: ignore[arg-type]


def test_a_reference_that_is_not_valid_unicode_is_an_invalid_command() -> None:
    ledger = stocked({("A", "berlin"): 10})
    refuse(ledger, AdjustStock("A", "berlin", 1, "received", "\ud800"), InvalidCommand)


# -- the single-line fast path agrees with the general one ------------------------------------

LOCATIONS = ("berlin", "paris", "rome")


def _stock_from(levels: list[tuple[int, int]]) -> Ledger:
    """SKU "A" with (on_hand, held) at each location of LOCATIONS, and SKU "B" at berlin."""
    ledger = Ledger()
    for location, (on_hand, held) in zip(LOCATIONS, levels, strict=False):
        run(ledger, SetStock("A", location, on_hand + held), 0)
        if held:
            old = ReserveStock(f"old-{location}", (LineRequest("A", held, location),), TTL)
            run(ledger, old, 0)
    run(ledger, SetStock("B", "berlin", 3), 0)
    return ledger


def _outcome(ledger: Ledger, command: ReserveStock) -> tuple[object, ...]:
    try:
        result, events = ledger.execute(command, T0)
    except DomainError as error:
        return ("error", type(error), error.args, ledger.fingerprint())
    ledger.check_invariants()
    return ("ok", result, events, ledger.fingerprint())


@settings(max_examples=150, deadline=None)
@given(
    levels=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 3)), min_size=0, max_size=len(LOCATIONS)
    ),
    sku=st.sampled_from(["A", "B", "Z"]),
    location=st.one_of(st.none(), st.sampled_from([*LOCATIONS, "oslo"])),
    quantity=st.integers(2, 9),
    split=st.integers(1, 8),
)
def test_a_single_line_hold_gives_the_same_events_as_the_same_hold_split_in_two_lines(
    levels: list[tuple[int, int]], sku: str, location: str | None, quantity: int, split: int
) -> None:
    first = min(split, quantity - 1)
    single = ReserveStock("h", (LineRequest(sku, quantity, location),), TTL, "ref")
    double = ReserveStock(
        "h",
        (LineRequest(sku, first, location), LineRequest(sku, quantity - first, location)),
        TTL,
        "ref",
    )
    assert _outcome(_stock_from(levels), single) == _outcome(_stock_from(levels), double)


def _general_plan(ledger: Ledger, command: ReserveStock) -> HoldPlaced:
    """Force the general path of plan_hold: the same single line, split in two lines of the
    same SKU and location that `_sum_lines` adds up again."""

    (line,) = command.lines
    half = line.quantity // 2
    doubled = command._replace(
        lines=(line._replace(quantity=half), line._replace(quantity=line.quantity - half))
    )
    return reservations.plan_hold(ledger, doubled, T0)


@settings(max_examples=150, deadline=None)
@given(
    levels=st.lists(
        st.tuples(st.integers(0, 6), st.integers(0, 3)), min_size=0, max_size=len(LOCATIONS)
    ),
    sku=st.sampled_from(["A", "B", "Z"]),
    location=st.one_of(st.none(), st.sampled_from([*LOCATIONS, "oslo"])),
    quantity=st.integers(2, 9),
)
def test_the_fast_path_plans_exactly_the_event_of_the_general_planner(
    levels: list[tuple[int, int]], sku: str, location: str | None, quantity: int
) -> None:
    command = ReserveStock("h", (LineRequest(sku, quantity, location),), TTL, None)
    fast_ledger, general_ledger = _stock_from(levels), _stock_from(levels)
    try:
        fast: object = reservations.plan_hold(fast_ledger, command, T0)
    except InsufficientStock as error:
        fast = error.shortages
    try:
        general: object = _general_plan(general_ledger, command)
    except InsufficientStock as error:
        general = error.shortages
    assert fast == general


def _corrupt_reserved_above_on_hand(ledger: Ledger) -> None:
    ledger.skus["A"].levels["berlin"].reserved = 7


def _corrupt_reserved_without_hold(ledger: Ledger) -> None:
    ledger.skus["A"].levels["paris"].reserved = 1


def _corrupt_reserved_unlike_hold(ledger: Ledger) -> None:
    ledger.skus["A"].levels["berlin"].reserved = 2


def _corrupt_hold_on_unknown_level(ledger: Ledger) -> None:
    del ledger.skus["A"].levels["berlin"]


def _corrupt_version(ledger: Ledger) -> None:
    ledger.skus["A"].version = 0


def _corrupt_active_count(ledger: Ledger) -> None:
    ledger.active_hold_count += 1


def _corrupt_negative(ledger: Ledger) -> None:
    ledger.skus["A"].levels["paris"].on_hand = -1


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (_corrupt_reserved_above_on_hand, "A@berlin: 6/7"),
        (_corrupt_reserved_without_hold, "A@paris: reserved differs"),
        (_corrupt_reserved_unlike_hold, "A@berlin: reserved differs"),
        (_corrupt_hold_on_unknown_level, "active holds on unknown levels"),
        (_corrupt_version, "A: version 0"),
        (_corrupt_active_count, "active hold count drifted"),
        (_corrupt_negative, "A@paris: -1/0"),
    ],
)
def test_check_invariants_names_what_is_wrong(
    corrupt: Callable[[Ledger], None], message: str
) -> None:
    ledger = stocked({("A", "berlin"): 10, ("A", "paris"): 5, ("B", "berlin"): 3})
    run(ledger, ReserveStock("h1", (LineRequest("A", 3, "berlin"),), TTL))
    run(ledger, ReserveStock("h2", (LineRequest("A", 4, "berlin"),), TTL))
    run(ledger, CommitHold("h2"))
    run(ledger, ReserveStock("h3", (LineRequest("B", 1, "berlin"),), TTL))
    run(ledger, ReleaseHold("h3"))
    ledger.check_invariants()
    corrupt(ledger)
    with pytest.raises(InvariantViolation, match=message):
        ledger.check_invariants()


def test_a_key_claim_changes_nothing_and_names_the_shard_that_runs_the_request() -> None:
    ledger = stocked({("A", "berlin"): 10})
    before = ledger.fingerprint()
    result, events = run(ledger, ClaimKey(3))
    assert result == KeyClaimed(3) and events == []
    assert ledger.fingerprint() == before
    refuse(ledger, ClaimKey(-1), InvalidCommand)
