"""The log's encoding: every command, event, result and error comes back equal."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_actors.domain import (
    AbortReservation,
    ActivateReservation,
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
    KeyClaimed,
    LevelImage,
    LineRequest,
    LocationView,
    MarkSettled,
    OpenReservation,
    PrepareHold,
    PruneHolds,
    PruneResult,
    ReleaseHold,
    ReservationActivated,
    ReservationExtended,
    ReservationFinished,
    ReservationOpened,
    ReservationSettled,
    ReserveStock,
    RestockResult,
    RestockRows,
    Result,
    SetStock,
    SetThreshold,
    SettleHold,
    Shortage,
    SkuView,
    StockAdjusted,
    StockLow,
    StockRecovered,
    StockRestocked,
    StockSet,
    StockTransferred,
    ThresholdSet,
    ThresholdView,
    TransferStock,
    VersionConflict,
)
from inventory_actors.shard.codec import (
    COMMAND_TAGS,
    EVENT_TAGS,
    RESULT_TAGS,
    decode_command,
    decode_events,
    decode_result,
    decode_rows,
    encode_command,
    encode_events,
    encode_result,
    encode_rows,
)

COMMANDS: list[Command] = [
    AdjustStock("A", "berlin", -3, "damaged", "ref-1", 4),
    AdjustStock("A", "berlin", 3, "received"),
    SetStock("A", "berlin", 0),
    SetStock("A", "berlin", 10**12, "correction", "count ü", 0),
    TransferStock("A", "berlin", "paris", 7, None, 2),
    TransferStock("A", "berlin", "paris", 1, "move"),
    ReserveStock("h1", (LineRequest("A", 1), LineRequest("B", 2, "paris")), 60_000, "cart"),
    ReserveStock("h2", (LineRequest("A", 1),), 1_000),
    CommitHold("h1"),
    ReleaseHold("h1"),
    ExtendHold("h1", 5_000),
    ExpireHolds(100),
    PruneHolds(123_456, 10),
    OpenReservation("r1", 0, (0, 2), (LineRequest("A", 1),), 60_000, 10_000, "cart"),
    OpenReservation("r2", 1, (1, 3), (), 1_000, 5_000),
    PrepareHold("r1", (LineRequest("B", 2, "paris"),), 99_000, None),
    ActivateReservation("r1", (HoldLine("B", "paris", 2),)),
    AbortReservation("r1"),
    SettleHold("r1", "committed"),
    MarkSettled("r1", 2),
    ClaimKey(1),
    RestockRows(
        "rj-1", 3, "delta", (1, 2), ("A", "B"), ("x", "y"), (5, -1), ("restock", "damaged")
    ),
    RestockRows("rj-1", 0, "set", (), (), (), (), ()),
    SetThreshold("A", "berlin", 10),
    SetThreshold("A", "berlin", None),
]

IMAGE = LevelImage("A", "berlin", 10, 3, 7)
EVENTS: list[Event] = [
    StockAdjusted(IMAGE, -2, "damaged", None),
    StockSet(IMAGE, 12, "cycle_count", "c-1"),
    StockTransferred(IMAGE, LevelImage("A", "paris", 2, 0, 7), 2, "move"),
    HoldPlaced(
        "h1",
        (HoldLine("A", "berlin", 3), HoldLine("B", "rome", 1)),
        99_000,
        "cart",
        (IMAGE, LevelImage("B", "rome", 1, 1, 2)),
    ),
    HoldPlaced("h2", (HoldLine("A", "berlin", 3),), 99_000, None, (IMAGE,)),
    HoldFinished("h1", HoldStatus.COMMITTED, (IMAGE,)),
    HoldFinished("h1", HoldStatus.RELEASED, (IMAGE,)),
    HoldFinished("h1", HoldStatus.EXPIRED, ()),
    HoldFinished("h1", HoldStatus.COMMITTED, (IMAGE,), (HoldLine("A", "berlin", 3),)),
    HoldExtended("h1", 123_000),
    HoldsPruned(("h1", "h2")),
    HoldsPruned(()),
    HoldPlaced("r1", (HoldLine("A", "berlin", 3),), 99_000, None, (IMAGE,), True),
    ReservationOpened("r1", (0, 2), (2,), 60_000, 70_000, "cart"),
    ReservationActivated("r1", 130_000, (HoldLine("A", "berlin", 3), HoldLine("C", "x", 1))),
    ReservationFinished("r1", HoldStatus.EXPIRED),
    ReservationExtended("r1", 190_000),
    ReservationSettled("r1", 2),
    StockRestocked(
        "rj-1",
        3,
        "delta",
        (1, 7),
        ("A", "B"),
        ("x", "y"),
        (0, 4),
        (5, 3),
        (0, 1),
        (1, 9),
        ("restock", "damaged"),
    ),
    ThresholdSet("A", "berlin", 10),
    ThresholdSet("A", "berlin", None),
    StockLow("A", "berlin", 9, 10),
    StockRecovered("A", "berlin", 10, 10),
]

RESULTS: list[Result] = [
    SkuView("A", 3, (LocationView("berlin", 5, 2), LocationView("paris", 0, 0))),
    SkuView("A", 1, ()),
    HoldView("h1", HoldStatus.ACTIVE, (HoldLine("A", "berlin", 3),), 5_000, "cart", 1_000, None),
    HoldView("h1", HoldStatus.EXPIRED, (HoldLine("A", "x", 1),), 5_000, None, 1_000, 6_000),
    ExpiryResult(3),
    PruneResult(0),
    KeyClaimed(1),
    RestockResult("rj-1", 3, 2, ((4, "quantity: must be an integer"), (9, "reason: bad"))),
    RestockResult("rj-1", 4, 0, ()),
    ThresholdView("A", "berlin", 10, 9, True),
    ThresholdView("A", "berlin", None, 0, False),
]

ERRORS: list[DomainError] = [
    InvalidCommand("delta must be a non-zero integer"),
    InsufficientStock((Shortage("A", "berlin", 3, 1), Shortage("B", None, 2, 0))),
    VersionConflict("A", 3, 4),
    HoldNotFound("h1"),
    HoldExists("h1"),
    HoldNotActive("h1", "released"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=repr)
def test_every_command_comes_back_equal(command: Command) -> None:
    decoded = decode_command(encode_command(command))
    assert decoded == command
    assert type(decoded) is type(command)


def test_every_command_type_has_a_tag_and_a_round_trip_here() -> None:
    assert {type(c) for c in COMMANDS} == set(COMMAND_TAGS)


def test_a_decoded_hold_has_lines_as_a_tuple_of_line_requests() -> None:
    decoded = decode_command(encode_command(COMMANDS[6]))
    assert isinstance(decoded, ReserveStock)
    assert isinstance(decoded.lines, tuple)
    assert all(isinstance(line, LineRequest) for line in decoded.lines)


def test_every_event_comes_back_equal_and_typed() -> None:
    decoded = decode_events(encode_events(EVENTS))
    assert decoded == EVENTS
    assert [type(e) for e in decoded] == [type(e) for e in EVENTS]
    assert {type(e) for e in EVENTS} == set(EVENT_TAGS)
    finished = decoded[5]
    assert isinstance(finished, HoldFinished) and finished.status is HoldStatus.COMMITTED
    placed = decoded[3]
    assert isinstance(placed, HoldPlaced)
    assert all(isinstance(line, HoldLine) for line in placed.lines)
    assert all(isinstance(image, LevelImage) for image in placed.levels)


def test_a_hold_placed_before_coordinated_holds_existed_still_decodes() -> None:
    old = '[["placed","h2",[["A","berlin",3]],99000,null,[["A","berlin",10,3,7]]]]'
    (placed,) = decode_events(old)
    assert isinstance(placed, HoldPlaced) and placed.coordinated is False


def test_no_events_encode_to_an_empty_list() -> None:
    assert decode_events(encode_events([])) == []


@pytest.mark.parametrize("result", RESULTS, ids=repr)
def test_every_result_comes_back_equal(result: Result) -> None:
    decoded = decode_result(encode_result(result))
    assert decoded == result and type(decoded) is type(result)


def test_a_decoded_hold_view_has_a_status_not_a_string() -> None:
    decoded = decode_result(encode_result(RESULTS[2]))
    assert isinstance(decoded, HoldView) and decoded.status is HoldStatus.ACTIVE
    assert decoded.lines == (HoldLine("A", "berlin", 3),)


@pytest.mark.parametrize("error", ERRORS, ids=repr)
def test_every_domain_error_comes_back_with_its_fields(error: DomainError) -> None:
    decoded = decode_result(encode_result(error))
    assert type(decoded) is type(error)
    assert isinstance(decoded, DomainError)
    assert decoded.args == error.args
    assert str(decoded) == str(error)
    assert vars(decoded) == vars(error)


def test_every_result_and_error_type_has_a_round_trip_here() -> None:
    assert {type(r) for r in RESULTS} | {type(e) for e in ERRORS} == set(RESULT_TAGS)


def test_a_decoded_shortage_is_a_shortage() -> None:
    decoded = decode_result(encode_result(ERRORS[1]))
    assert isinstance(decoded, InsufficientStock)
    assert all(isinstance(s, Shortage) for s in decoded.shortages)
    assert decoded.shortages[1].location is None


def test_the_encoding_is_compact_json_with_the_tag_first() -> None:
    text = encode_command(AdjustStock("A", "b", 1, "received"))
    assert text == '["adjust","A","b",1,"received",null,null]'
    assert json.loads(encode_events([HoldExtended("h", 5)])) == [["extended", "h", 5]]


def test_non_ascii_text_is_kept_as_is() -> None:
    text = encode_command(AdjustStock("A", "b", 1, "received", "Grüße 🚚"))
    assert "Grüße 🚚" in text
    assert decode_command(text) == AdjustStock("A", "b", 1, "received", "Grüße 🚚")


def test_a_value_json_cannot_carry_is_refused() -> None:
    with pytest.raises(TypeError):
        encode_command(AdjustStock("A", "b", 1, "received", object()))  # type: ignore[arg-type]


def test_snapshot_rows_come_back_as_lists() -> None:
    rows: list[object] = [["A", 3, [["berlin", 5, 2]]], ["h1", "active", 1, None, 0, None, []]]
    assert decode_rows(encode_rows(rows)) == rows
    assert decode_rows(encode_rows(rows).encode()) == rows


references = st.one_of(st.none(), st.text(max_size=20).filter(lambda s: "\x00" not in s))


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        ReserveStock,
        st.text(min_size=1, max_size=64),
        st.lists(
            st.builds(
                LineRequest,
                st.text(min_size=1, max_size=8),
                st.integers(1, 10**9),
                st.one_of(st.none(), st.text(max_size=8)),
            ),
            min_size=1,
            max_size=5,
        ).map(tuple),
        st.integers(1_000, 86_400_000),
        references,
    )
)
def test_any_hold_comes_back_equal(command: ReserveStock) -> None:
    assert decode_command(encode_command(command)) == command


def _generic(value: tuple[object, ...]) -> str:
    """The plain encoder's text, which the direct encodings of one-line holds must equal."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


ids = st.text(min_size=1, max_size=12)
counts = st.integers(0, 10**12)


@settings(max_examples=200, deadline=None)
@given(
    ids, ids, ids, st.integers(1, 10**9), counts, counts, counts, references, counts, st.booleans()
)
def test_a_one_line_hold_encodes_as_the_generic_encoder_would(
    hold_id: str,
    sku: str,
    location: str,
    quantity: int,
    on_hand: int,
    reserved: int,
    version: int,
    reference: str | None,
    at_ms: int,
    coordinated: bool,
) -> None:
    line = HoldLine(sku, location, quantity)
    image = LevelImage(sku, location, on_hand, reserved, version)
    event = HoldPlaced(hold_id, (line,), at_ms, reference, (image,), coordinated)
    assert encode_events([event]) == _generic(([EVENT_TAGS[HoldPlaced], *event],))
    assert decode_events(encode_events([event])) == [event]
    for status in HoldStatus:
        for finished in (None, at_ms + 1):
            view = HoldView(hold_id, status, (line,), at_ms, reference, version, finished)
            assert encode_result(view) == _generic((RESULT_TAGS[HoldView], *view))
            assert decode_result(encode_result(view)) == view


def test_a_line_without_its_location_still_decodes_to_a_full_line_request() -> None:
    command = decode_command('["reserve","h1",[["A",2]],1000,null]')
    assert command == ReserveStock("h1", (LineRequest("A", 2, None),), 1_000)
    assert all(isinstance(line, LineRequest) for line in command.lines)


@pytest.mark.parametrize(
    "text",
    [
        '["hold","h1","active",[["A","x",1]],5,null,1]',  # a field short
        '["hold","h1","active",[["A","x",1]],5,null,1,null,"extra"]',  # a field too many
        '["hold","h1","active",[["A","x",1,"extra"]],5,null,1,null]',  # a line field too many
        '["hold","h1","unknown",[["A","x",1]],5,null,1,null]',  # no such status
    ],
)
def test_a_hold_answer_of_the_wrong_shape_does_not_decode(text: str) -> None:
    with pytest.raises((TypeError, ValueError)):
        decode_result(text)


def test_crossing_events_keep_the_fields_the_change_feed_reads() -> None:
    """The feed maps these to `stock.low` / `stock.recovered` by their field names."""
    text = encode_events([StockLow("A", "berlin", 9, 10), StockRecovered("A", "berlin", 10, 10)])
    assert json.loads(text) == [
        ["stock-low", "A", "berlin", 9, 10],
        ["stock-recovered", "A", "berlin", 10, 10],
    ]
    assert StockLow._fields == ("sku", "location", "available", "low_stock_below")
    assert StockRecovered._fields == StockLow._fields
    assert ThresholdSet._fields == ("sku", "location", "low_stock_below")
