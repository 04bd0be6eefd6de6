"""The log's record format, in one place, old formats included: compact JSON of commands, events
and results for log and idempotency records, and replay's fast decoders of the same records.

Every value is `[tag, fields...]`, nested records as arrays: small, readable by any JSON tool
and fast with the C encoder. Tags are part of the on-disk format: never reuse or renumber one."""

import json
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring
from typing import Any

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


def _refuse(value: object) -> object:
    raise TypeError(f"cannot encode {type(value).__name__}")


def _make_dumps() -> Callable[[object], str]:
    """One reusable C encoder: `json.dumps` builds a new one per call, which costs more than
    encoding a small record. No circular-reference check: records are trees."""
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # pragma: no cover - CPython always has it
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    encoder = make_encoder(None, _refuse, encode_basestring, None, ":", ",", False, False, True)
    return lambda value: "".join(encoder(value, 0))


_dumps = _make_dumps()
_loads = json.loads
_new = tuple.__new__


def _image(raw: list[Any]) -> LevelImage:
    return LevelImage(*raw)


# Calling the enum (HoldStatus("active")) costs more than the rest of decoding a hold.
_STATUSES: dict[str, HoldStatus] = {status.value: status for status in HoldStatus}


def _status(raw: str) -> HoldStatus:
    """The status named `raw`; ValueError for an unknown one, as the enum raises."""
    return _STATUSES.get(raw) or HoldStatus(raw)


def _images(raw: list[list[Any]]) -> tuple[LevelImage, ...]:
    return tuple([LevelImage(*item) for item in raw])


def _hold_view(row: Sequence[Any]) -> HoldView:
    """Every answer to a hold command: built without the named tuple's Python-level __new__
    when the row has exactly the view's fields (the constructor checks any other row)."""
    if len(row) != 8:
        return HoldView(row[1], _status(row[2]), _hold_lines(row[3]), *row[4:])
    lines = row[3]
    if len(lines) == 1 and len(lines[0]) == 3:
        held: tuple[HoldLine, ...] = (_new(HoldLine, lines[0]),)
    else:
        held = _hold_lines(lines)
    return _new(HoldView, (row[1], _status(row[2]), held, row[4], row[5], row[6], row[7]))


def _line_requests(raw: Sequence[Any]) -> tuple[LineRequest, ...]:
    """The lines of a reserve; a single full line (the common cart) skips the constructor."""
    if len(raw) == 1 and len(raw[0]) == 3:
        return (_new(LineRequest, raw[0]),)
    return tuple([LineRequest(*x) for x in raw])


def _hold_lines(raw: list[list[Any]]) -> tuple[HoldLine, ...]:
    return tuple([HoldLine(*item) for item in raw])


COMMAND_TAGS: dict[type, str] = {
    AdjustStock: "adjust",
    SetStock: "set",
    TransferStock: "transfer",
    ReserveStock: "reserve",
    CommitHold: "commit",
    ReleaseHold: "release",
    ExtendHold: "extend",
    ExpireHolds: "expire",
    PruneHolds: "prune",
    OpenReservation: "open-reservation",
    PrepareHold: "prepare",
    ActivateReservation: "activate",
    AbortReservation: "abort",
    SettleHold: "settle",
    MarkSettled: "settled",
    ClaimKey: "claim",
    RestockRows: "restock",
    SetThreshold: "threshold",
}

# Decoders take the whole tagged row ([tag, fields...]); positional construction keeps the
# field-count check of the named tuples.
_COMMAND_DECODERS: dict[str, Callable[[Sequence[Any]], Command]] = {
    "adjust": lambda r: AdjustStock(r[1], r[2], r[3], r[4], r[5], r[6]),
    "set": lambda r: SetStock(r[1], r[2], r[3], r[4], r[5], r[6]),
    "transfer": lambda r: TransferStock(r[1], r[2], r[3], r[4], r[5], r[6]),
    # tuple.__new__: the row's length is checked first, and the lines keep their own check.
    "reserve": lambda r: _new(ReserveStock, (r[1], _line_requests(r[2]), r[3], r[4])),
    "commit": lambda r: CommitHold(r[1]),
    "release": lambda r: ReleaseHold(r[1]),
    "extend": lambda r: ExtendHold(r[1], r[2]),
    "expire": lambda r: ExpireHolds(r[1]),
    "prune": lambda r: PruneHolds(r[1], r[2]),
    "open-reservation": lambda r: OpenReservation(
        r[1], r[2], tuple(r[3]), _line_requests(r[4]), r[5], r[6], r[7]
    ),
    "prepare": lambda r: PrepareHold(r[1], _line_requests(r[2]), r[3], r[4]),
    "activate": lambda r: ActivateReservation(r[1], _hold_lines(r[2])),
    "abort": lambda r: AbortReservation(r[1]),
    "settle": lambda r: SettleHold(r[1], r[2]),
    "settled": lambda r: MarkSettled(r[1], r[2]),
    "claim": lambda r: ClaimKey(r[1]),
    "restock": lambda r: RestockRows(r[1], r[2], r[3], *map(tuple, r[4:])),
    "threshold": lambda r: SetThreshold(r[1], r[2], r[3]),
}

_COMMAND_FIELDS: dict[str, tuple[str, ...]] = {
    tag: kind._fields  # type: ignore[attr-defined]
    for kind, tag in COMMAND_TAGS.items()
}

EVENT_TAGS: dict[type, str] = {
    StockAdjusted: "adjusted",
    StockSet: "set",
    StockTransferred: "transferred",
    HoldPlaced: "placed",
    HoldFinished: "finished",
    HoldExtended: "extended",
    HoldsPruned: "pruned",
    ReservationOpened: "reservation-opened",
    ReservationActivated: "reservation-activated",
    ReservationFinished: "reservation-finished",
    ReservationExtended: "reservation-extended",
    ReservationSettled: "reservation-settled",
    StockRestocked: "restocked",
    ThresholdSet: "threshold-set",
    StockLow: "stock-low",
    StockRecovered: "stock-recovered",
}

_EVENT_DECODERS: dict[str, Callable[[list[Any]], Event]] = {
    "adjusted": lambda f: StockAdjusted(_image(f[0]), *f[1:]),
    "set": lambda f: StockSet(_image(f[0]), *f[1:]),
    "transferred": lambda f: StockTransferred(_image(f[0]), _image(f[1]), *f[2:]),
    # Records written before coordinated holds existed have five fields.
    "placed": lambda f: HoldPlaced(f[0], _hold_lines(f[1]), f[2], f[3], _images(f[4]), *f[5:]),
    # Records written before the change feed have three fields.
    "finished": lambda f: HoldFinished(
        f[0], _status(f[1]), _images(f[2]), _hold_lines(f[3]) if len(f) > 3 else ()
    ),
    "extended": lambda f: HoldExtended(*f),
    "pruned": lambda f: HoldsPruned(tuple(f[0])),
    "reservation-opened": lambda f: ReservationOpened(f[0], tuple(f[1]), tuple(f[2]), *f[3:]),
    "reservation-activated": lambda f: ReservationActivated(f[0], f[1], _hold_lines(f[2])),
    "reservation-finished": lambda f: ReservationFinished(f[0], HoldStatus(f[1])),
    "reservation-extended": lambda f: ReservationExtended(*f),
    "reservation-settled": lambda f: ReservationSettled(*f),
    "restocked": lambda f: StockRestocked(f[0], f[1], f[2], *map(tuple, f[3:])),
    "threshold-set": lambda f: ThresholdSet(*f),
    "stock-low": lambda f: StockLow(*f),
    "stock-recovered": lambda f: StockRecovered(*f),
}

RESULT_TAGS: dict[type, str] = {
    SkuView: "sku",
    HoldView: "hold",
    ExpiryResult: "expired",
    PruneResult: "pruned",
    KeyClaimed: "claimed",
    RestockResult: "restocked",
    ThresholdView: "threshold",
    InvalidCommand: "invalid",
    InsufficientStock: "insufficient",
    VersionConflict: "version-conflict",
    HoldNotFound: "hold-not-found",
    HoldExists: "hold-exists",
    HoldNotActive: "hold-not-active",
}

# Decoders take the whole tagged row, like the command decoders: no copy of its fields.
_RESULT_DECODERS: dict[str, Callable[[Sequence[Any]], Result | DomainError]] = {
    "sku": lambda r: SkuView(r[1], r[2], tuple([LocationView(*x) for x in r[3]])),
    "hold": _hold_view,
    "expired": lambda r: ExpiryResult(*r[1:]),
    "pruned": lambda r: PruneResult(*r[1:]),
    "claimed": lambda r: KeyClaimed(*r[1:]),
    "restocked": lambda r: RestockResult(r[1], r[2], r[3], tuple(map(tuple, r[4]))),
    "threshold": lambda r: ThresholdView(*r[1:]),
    "invalid": lambda r: InvalidCommand(*r[1:]),
    "insufficient": lambda r: InsufficientStock(tuple([Shortage(*x) for x in r[1]])),
    "version-conflict": lambda r: VersionConflict(*r[1:]),
    "hold-not-found": lambda r: HoldNotFound(*r[1:]),
    "hold-exists": lambda r: HoldExists(*r[1:]),
    "hold-not-active": lambda r: HoldNotActive(*r[1:]),
}


def command_row(command: Command) -> tuple[Any, ...]:
    """A command as a plain tagged tuple: what the JSON holds."""
    return (COMMAND_TAGS[type(command)], *command)


def command_from_row(row: Sequence[Any]) -> Command:
    if len(row) != len(_COMMAND_FIELDS[row[0]]) + 1:
        raise ValueError(f"{row[0]} record has {len(row) - 1} fields")
    return _COMMAND_DECODERS[row[0]](row)


def encode_command(command: Command) -> str:
    return _dumps(command_row(command))


def decode_command(text: str) -> Command:
    return command_from_row(_loads(text))


def restock_log_text(command: RestockRows) -> str:
    """What the log keeps of a restock command: which job, chunk and mode, and how many rows.
    The rows themselves are in the record's event (those applied) and in the command's
    idempotency record (those rejected, with their reasons): written once, not twice."""
    return _dumps(("restock-rows", command.job_id, command.chunk, command.mode, len(command.rows)))


def encode_events(events: Sequence[Event]) -> str:
    if len(events) == 1:  # nearly every record: no comprehension to set up
        event = events[0]
        if type(event) is HoldPlaced and len(event.lines) == 1 and len(event.levels) == 1:
            return _one_line_placed_text(event)
        return _dumps(((EVENT_TAGS[type(event)], *event),))
    return _dumps([(EVENT_TAGS[type(event)], *event) for event in events])


def event_from_row(row: Sequence[Any]) -> Event:
    """One decoded event row: [tag, fields...]."""
    return _EVENT_DECODERS[row[0]](list(row[1:]))


def decode_events(text: str) -> list[Event]:
    return [_EVENT_DECODERS[tag](fields) for tag, *fields in _loads(text)]


# Replay and the change feed decode the log the shard wrote itself, so the common events are
# built with tuple.__new__, skipping the named tuples' Python-level constructors (and their
# field-count checks: the invariant check after recovery stands behind them). Same values as
# `decode_events` (property-tested). Each takes the whole tagged row: [tag, fields...].
def _trusted_image(raw: list[Any]) -> LevelImage:
    return _new(LevelImage, raw)


def _trusted_images(raw: list[list[Any]]) -> tuple[LevelImage, ...]:
    return tuple([_new(LevelImage, item) for item in raw])


def _trusted_lines(raw: list[list[Any]]) -> tuple[HoldLine, ...]:
    return tuple([_new(HoldLine, item) for item in raw])


_TRUSTED_BUILDERS: dict[type, Callable[[list[Any]], Event]] = {
    StockAdjusted: lambda r: _new(StockAdjusted, (_trusted_image(r[1]), r[2], r[3], r[4])),
    StockSet: lambda r: _new(StockSet, (_trusted_image(r[1]), r[2], r[3], r[4])),
    StockTransferred: lambda r: _new(
        StockTransferred, (_trusted_image(r[1]), _trusted_image(r[2]), r[3], r[4])
    ),
    # Records written before coordinated holds existed have no seventh field.
    HoldPlaced: lambda r: _new(
        HoldPlaced,
        (r[1], _trusted_lines(r[2]), r[3], r[4], _trusted_images(r[5]), len(r) > 6 and r[6]),
    ),
    # Records written before the change feed have no lines.
    HoldFinished: lambda r: _new(
        HoldFinished,
        (r[1], HoldStatus(r[2]), _trusted_images(r[3]), _trusted_lines(r[4]) if len(r) > 4 else ()),
    ),
    HoldExtended: lambda r: _new(HoldExtended, (r[1], r[2])),
    HoldsPruned: lambda r: _new(HoldsPruned, (tuple(r[1]),)),
}
# Rarer events (reservations across shards, restocks, thresholds) take the checked decoders.
REPLAY_DECODERS: dict[str, Callable[[list[Any]], Event]] = {
    tag: event_from_row for tag in EVENT_TAGS.values()
}
REPLAY_DECODERS.update({EVENT_TAGS[kind]: build for kind, build in _TRUSTED_BUILDERS.items()})


def result_row(result: Result | DomainError) -> tuple[Any, ...]:
    fields = result.args if isinstance(result, DomainError) else result
    return (RESULT_TAGS[type(result)], *fields)


def result_from_row(row: Sequence[Any]) -> Result | DomainError:
    return _RESULT_DECODERS[row[0]](row)


def encode_result(result: Result | DomainError) -> str:
    if type(result) is HoldView and len(result.lines) == 1:
        return _one_line_hold_text(result)
    return _dumps(result_row(result))


# The record and the answer of a one-line hold (most of a shard's traffic), formatted directly:
# a third of the generic encoder's cost, and the same text (tested). The domain guarantees the
# types: ids, statuses and references are strings, the numbers ints (never bools).
_quote = encode_basestring


def _one_line_placed_text(event: HoldPlaced) -> str:
    hold_id, ((sku, location, quantity),), expires_at_ms, reference, (level,), coordinated = event
    _, _, on_hand, reserved, version = level
    ref = "null" if reference is None else _quote(reference)
    return (
        f'[["placed",{_quote(hold_id)},[[{_quote(sku)},{_quote(location)},{quantity:d}]],'
        f"{expires_at_ms:d},{ref},[[{_quote(level.sku)},{_quote(level.location)},"
        f"{on_hand:d},{reserved:d},{version:d}]],{'true' if coordinated else 'false'}]]"
    )


def _one_line_hold_text(view: HoldView) -> str:
    hold_id, status, ((sku, location, quantity),), expires_at_ms, reference, created, finished = (
        view
    )
    ref = "null" if reference is None else _quote(reference)
    end = "null" if finished is None else f"{finished:d}"
    return (
        f'["hold",{_quote(hold_id)},{_quote(status)},[[{_quote(sku)},{_quote(location)},'
        f"{quantity:d}]],{expires_at_ms:d},{ref},{created:d},{end}]"
    )


def decode_result(text: str) -> Result | DomainError:
    return result_from_row(_loads(text))


def dumps(value: object) -> str:
    """Compact JSON of plain values and records (tuples become arrays)."""
    return _dumps(value)


def encode_rows(rows: Sequence[object]) -> str:
    return _dumps(rows)


def decode_rows(text: str | bytes) -> list[Any]:
    rows: list[Any] = _loads(text)
    return rows
