"""Restock rows in the ledger: each row applied or rejected on its own, in order, and the event
replays to the same state."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_actors.domain import (
    AdjustStock,
    InvalidCommand,
    Ledger,
    LineRequest,
    ReserveStock,
    RestockResult,
    RestockRows,
    StockRestocked,
)
from inventory_actors.domain import restock as messages
from inventory_actors.domain.limits import DELTA_MAX, ON_HAND_MAX, RESTOCK_ROWS_PER_COMMAND_MAX


def rows(mode: str, *items: tuple[str, str, int, str], chunk: int = 0) -> RestockRows:
    """A restock of `items` (sku, location, quantity, reason), numbered from 1."""
    return RestockRows(
        "rj-test",
        chunk,
        mode,
        tuple(range(1, len(items) + 1)),
        tuple(i[0] for i in items),
        tuple(i[1] for i in items),
        tuple(i[2] for i in items),
        tuple(i[3] for i in items),
    )


def levels(ledger: Ledger) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (sku_id, name): (level.on_hand, level.reserved)
        for sku_id, sku in ledger.skus.items()
        for name, level in sku.levels.items()
    }


def test_delta_rows_add_and_later_rows_see_earlier_ones() -> None:
    ledger = Ledger()
    result, events = ledger.execute(
        rows("delta", ("A", "x", 5, "restock"), ("A", "x", 3, "received"), ("B", "y", 2, "other")),
        1_000,
    )
    assert result == RestockResult("rj-test", 0, 3, ())
    assert levels(ledger) == {("A", "x"): (8, 0), ("B", "y"): (2, 0)}
    assert ledger.skus["A"].version == 2
    (event,) = events
    assert isinstance(event, StockRestocked)
    assert event.on_hand_before == (0, 5, 0)
    assert event.on_hand == (5, 8, 2)
    assert event.versions == (1, 2, 1)
    assert ledger.level_count == 2
    ledger.check_invariants()


def test_set_rows_count_on_hand_and_never_go_below_reserved() -> None:
    ledger = Ledger()
    ledger.execute(AdjustStock("A", "x", 10, "received"), 0)
    ledger.execute(ReserveStock("h1", (LineRequest("A", 4, "x"),), 60_000), 0)
    result, _ = ledger.execute(
        rows("set", ("A", "x", 3, "cycle_count"), ("A", "x", 7, "cycle_count")), 0
    )
    assert isinstance(result, RestockResult)
    assert result.applied == 1
    assert result.rejects == ((1, "insufficient-stock: on_hand 3 below reserved 4"),)
    assert levels(ledger)[("A", "x")] == (7, 4)
    ledger.check_invariants()


def test_each_bad_row_is_rejected_with_its_reason_and_good_rows_apply() -> None:
    ledger = Ledger()
    ledger.execute(AdjustStock("A", "x", 10, "received"), 0)
    ledger.execute(ReserveStock("h1", (LineRequest("A", 6, "x"),), 60_000), 0)
    before = levels(ledger)
    command = rows(
        "delta",
        ("bad sku", "x", 1, "restock"),
        ("B", "bad location!", 1, "restock"),
        ("B", "y", 1.5, "restock"),  # type: ignore[arg-type]
        ("B", "y", True, "restock"),
        ("B", "y", 0, "restock"),
        ("B", "y", DELTA_MAX + 1, "restock"),
        ("B", "y", 1, "stolen"),
        ("A", "x", -5, "damaged"),  # 10 - 5 < 6 reserved
        ("B", "y", 4, "restock"),  # the one good row
    )
    result, events = ledger.execute(command, 0)
    assert isinstance(result, RestockResult)
    assert result.applied == 1
    assert [reason for _, reason in result.rejects] == [
        messages.BAD_SKU,
        messages.BAD_LOCATION,
        messages.NOT_INTEGER,
        messages.NOT_INTEGER,
        messages.BAD_DELTA,
        messages.BAD_DELTA,
        messages.BAD_REASON,
        "insufficient-stock: on_hand 5 below reserved 6",
    ]
    assert [row for row, _ in result.rejects] == list(range(1, 9))
    assert levels(ledger) == {**before, ("B", "y"): (4, 0)}
    (event,) = events
    assert isinstance(event, StockRestocked)
    assert event.rows == (9,)
    assert event.skus == ("B",)


def test_set_mode_limits_and_the_ceiling() -> None:
    ledger = Ledger()
    result, _ = ledger.execute(
        rows(
            "set",
            ("A", "x", -1, "cycle_count"),
            ("A", "x", ON_HAND_MAX + 1, "cycle_count"),
            ("A", "x", ON_HAND_MAX, "cycle_count"),
        ),
        0,
    )
    assert isinstance(result, RestockResult)
    assert [reason for _, reason in result.rejects] == [messages.BAD_COUNT, messages.BAD_COUNT]
    result, _ = ledger.execute(rows("delta", ("A", "x", 1, "restock")), 0)
    assert isinstance(result, RestockResult)
    assert result.rejects == ((1, messages.CEILING),)
    assert levels(ledger)[("A", "x")] == (ON_HAND_MAX, 0)


def test_a_command_with_only_rejects_records_nothing() -> None:
    ledger = Ledger()
    result, events = ledger.execute(rows("delta", ("A", "x", 0, "restock")), 0)
    assert isinstance(result, RestockResult)
    assert result.applied == 0
    assert events == []
    assert ledger.skus == {}


@pytest.mark.parametrize(
    "command",
    [
        RestockRows("bad job", 0, "delta", (), (), (), (), ()),
        RestockRows("rj", -1, "delta", (), (), (), (), ()),
        RestockRows("rj", 0, "add", (), (), (), (), ()),
        RestockRows("rj", 0, "delta", (1,), (), (), (), ()),
        RestockRows(
            "rj",
            0,
            "delta",
            *([tuple(range(RESTOCK_ROWS_PER_COMMAND_MAX + 1))] * 5),  # type: ignore[arg-type]
        ),
    ],
    ids=["job id", "chunk", "mode", "ragged", "too many rows"],
)
def test_a_malformed_command_is_refused_whole(command: RestockRows) -> None:
    ledger = Ledger()
    with pytest.raises(InvalidCommand):
        ledger.execute(command, 0)
    assert ledger.skus == {}


_ITEM = st.tuples(
    st.sampled_from(["A", "B", "C"]),
    st.sampled_from(["x", "y"]),
    st.integers(-20, 20),
    st.sampled_from(["restock", "damaged"]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["delta", "set"]), st.lists(_ITEM, max_size=12)), max_size=5)
)
def test_replaying_the_events_gives_the_same_state(
    commands: list[tuple[str, list[tuple[str, str, int, str]]]],
) -> None:
    """Each row on its own against a reference model, and replay of the events agrees."""
    live, replayed = Ledger(), Ledger()
    model: dict[tuple[str, str], int] = {}
    for chunk, (mode, items) in enumerate(commands):
        result, events = live.execute(rows(mode, *items, chunk=chunk), 0)
        assert isinstance(result, RestockResult)
        rejected = {row for row, _ in result.rejects}
        for row, (sku, location, quantity, _) in enumerate(items, start=1):
            after = model.get((sku, location), 0) + quantity if mode == "delta" else quantity
            bad = after < 0 or (mode == "delta" and quantity == 0)
            assert (row in rejected) == bad
            if not bad:
                model[(sku, location)] = after
        for event in events:
            replayed.apply(event, 0)
    assert {key: on_hand for key, (on_hand, _) in levels(live).items()} == model
    assert levels(replayed) == levels(live)
    assert {k: s.version for k, s in replayed.skus.items()} == {
        k: s.version for k, s in live.skus.items()
    }
    live.check_invariants()
