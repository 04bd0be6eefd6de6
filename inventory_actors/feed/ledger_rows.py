"""The log as rows: one row per SKU-location an event changed, as an Arrow table that pandas,
DuckDB or Spark read as it is (`inventory export-ledger` writes these). An event that changes
no level gives one row with no SKU, so the ledger hides no record (docs/restock.md, Exports)."""

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pyarrow as pa

from inventory_actors.domain import (
    Event,
    HoldFinished,
    HoldPlaced,
    LevelImage,
    StockAdjusted,
    StockRestocked,
    StockSet,
    StockTransferred,
)
from inventory_actors.shard.codec import EVENT_TAGS, decode_events

LEDGER_SCHEMA = pa.schema(
    [
        ("shard", pa.int32()),
        ("lsn", pa.int64()),
        ("at", pa.timestamp("ms", tz="UTC")),
        ("type", pa.string()),
        ("sku", pa.string()),
        ("location", pa.string()),
        ("on_hand", pa.int64()),
        ("reserved", pa.int64()),
        ("version", pa.int64()),
        # The change of on_hand, where the event alone says it (not for a hold's end).
        ("delta", pa.int64()),
        ("reason", pa.string()),
        ("reference", pa.string()),
        ("hold_id", pa.string()),
        ("status", pa.string()),
        ("job_id", pa.string()),
    ]
)
_FIELDS = LEDGER_SCHEMA.names
# (sku, location, on_hand, reserved, version, delta, reason, reference, hold_id, status, job)
Row = tuple[Any, ...]
_NOTHING: Row = (None,) * 11


def _level(image: LevelImage, delta: int | None, *rest: Any) -> Row:
    return (image.sku, image.location, image.on_hand, image.reserved, image.version, delta, *rest)


def _adjusted(event: StockAdjusted) -> list[Row]:
    return [_level(event.level, event.delta, event.reason, event.reference, None, None, None)]


def _set(event: StockSet) -> list[Row]:
    delta = event.level.on_hand - event.on_hand_before
    return [_level(event.level, delta, event.reason, event.reference, None, None, None)]


def _transferred(event: StockTransferred) -> list[Row]:
    return [
        _level(event.source, -event.quantity, None, event.reference, None, None, None),
        _level(event.target, event.quantity, None, event.reference, None, None, None),
    ]


def _placed(event: HoldPlaced) -> list[Row]:
    return [
        _level(image, 0, None, event.reference, event.hold_id, "active", None)
        for image in event.levels
    ]


def _finished(event: HoldFinished) -> list[Row]:
    # A commit takes the held units off on_hand, but the event holds only the result.
    delta = None if event.status == "committed" else 0
    rows = [
        _level(image, delta, None, None, event.hold_id, str(event.status), None)
        for image in event.levels
    ]
    return rows or [(*_NOTHING[:8], event.hold_id, str(event.status), None)]


def _restocked(event: StockRestocked) -> list[Row]:
    return [
        (sku, location, after, reserved, version, after - before, reason, None, None, None, job)
        for sku, location, before, after, reserved, version, reason, job in zip(
            event.skus,
            event.locations,
            event.on_hand_before,
            event.on_hand,
            event.reserved,
            event.versions,
            event.reasons,
            [event.job_id] * len(event.rows),
            strict=True,
        )
    ]


def _other(event: Event) -> list[Row]:
    """An event that changes no level: the level it names (a threshold, a crossing) and its
    hold or reservation id, if it has them."""
    hold_id = getattr(event, "hold_id", None) or getattr(event, "reservation_id", None)
    status = getattr(event, "status", None)
    level = (getattr(event, "sku", None), getattr(event, "location", None))
    return [(*level, *_NOTHING[:6], hold_id, None if status is None else str(status), None)]


_ROWS: dict[type, Callable[[Any], list[Row]]] = {
    StockAdjusted: _adjusted,
    StockSet: _set,
    StockTransferred: _transferred,
    HoldPlaced: _placed,
    HoldFinished: _finished,
    StockRestocked: _restocked,
}


def event_rows(event: Event) -> list[Row]:
    """The rows of one event, without its shard, LSN, time and type."""
    return _ROWS.get(type(event), _other)(event)


def _extend_restocked(
    columns: list[list[Any]], shard_id: int, lsn: int, at_ms: int, kind: str, event: StockRestocked
) -> None:
    """A restock's rows a column at a time: it may carry 100,000 of them."""
    count = len(event.rows)
    deltas = [b - a for a, b in zip(event.on_hand_before, event.on_hand, strict=True)]
    values: tuple[Sequence[Any], ...] = (
        [shard_id] * count,
        [lsn] * count,
        [at_ms] * count,
        [kind] * count,
        event.skus,
        event.locations,
        event.on_hand,
        event.reserved,
        event.versions,
        deltas,
        event.reasons,
        [None] * count,
        [None] * count,
        [None] * count,
        [event.job_id] * count,
    )
    for column, more in zip(columns, values, strict=True):
        column.extend(more)


def ledger_table(shard_id: int, records: Iterable[Sequence[Any]]) -> pa.Table:
    """The rows of (lsn, at_ms, events JSON) log records of one shard, in log order."""
    columns: list[list[Any]] = [[] for _ in _FIELDS]
    shards, lsns, times, types = columns[:4]
    rest = columns[4:]
    for lsn, at_ms, events_text in records:
        for event in decode_events(events_text):
            kind = EVENT_TAGS[type(event)]
            if type(event) is StockRestocked:
                _extend_restocked(columns, shard_id, lsn, at_ms, kind, event)
                continue
            for row in event_rows(event):
                shards.append(shard_id)
                lsns.append(lsn)
                times.append(at_ms)
                types.append(kind)
                for column, value in zip(rest, row, strict=True):
                    column.append(value)
    return pa.table(
        [
            pa.array(column, field.type)
            for column, field in zip(columns, LEDGER_SCHEMA, strict=True)
        ],
        schema=LEDGER_SCHEMA,
    )
