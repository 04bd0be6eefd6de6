"""The change feed's events: what each committed log record tells, as the contract's events,
encoded once as JSON text (`FeedItem`) or as dicts. Events come only from committed records,
so the feed can never tell of a change that did not happen (docs/feed.md, Events)."""

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from inventory_actors.domain import (
    Event,
    HoldFinished,
    HoldLine,
    HoldPlaced,
    LevelImage,
    StockAdjusted,
    StockRestocked,
    StockSet,
    StockTransferred,
)
from inventory_actors.shard.codec import REPLAY_DECODERS, decode_rows, dumps

FeedEvent = dict[str, Any]


def _level(image: LevelImage) -> dict[str, int]:
    return {
        "on_hand": image.on_hand,
        "reserved": image.reserved,
        "available": image.on_hand - image.reserved,
    }


def _before(on_hand: int, reserved: int) -> dict[str, int]:
    return {"on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved}


def _event(
    kind: str,
    image: LevelImage,
    before: dict[str, int],
    delta: int,
    reason: str | None = None,
    reference: str | None = None,
    reservation_id: str | None = None,
) -> FeedEvent:
    return {
        "type": kind,
        "sku": image.sku,
        "location": image.location,
        "before": before,
        "after": _level(image),
        "delta": delta,
        "reason": reason,
        "reference": reference,
        "version": image.version,
        "reservation_id": reservation_id,
    }


def _adjusted(event: StockAdjusted) -> list[FeedEvent]:
    image = event.level
    before = _before(image.on_hand - event.delta, image.reserved)
    return [_event("stock.adjusted", image, before, event.delta, event.reason, event.reference)]


def _set(event: StockSet) -> list[FeedEvent]:
    image = event.level
    delta = image.on_hand - event.on_hand_before
    before = _before(event.on_hand_before, image.reserved)
    return [_event("stock.set", image, before, delta, event.reason, event.reference)]


def _transferred(event: StockTransferred) -> list[FeedEvent]:
    source, target, quantity = event.source, event.target, event.quantity
    return [
        _event(
            "stock.transferred",
            source,
            _before(source.on_hand + quantity, source.reserved),
            -quantity,
            None,
            event.reference,
        ),
        _event(
            "stock.transferred",
            target,
            _before(target.on_hand - quantity, target.reserved),
            quantity,
            None,
            event.reference,
        ),
    ]


def _units(lines: Iterable[HoldLine]) -> dict[tuple[str, str], int]:
    units: dict[tuple[str, str], int] = {}
    for line in lines:
        key = (line.sku, line.location)
        units[key] = units.get(key, 0) + line.quantity
    return units


def _placed(event: HoldPlaced) -> list[FeedEvent]:
    units = _units(event.lines)
    return [
        _event(
            "reservation.created",
            image,
            _before(image.on_hand, image.reserved - units.get((image.sku, image.location), 0)),
            0,
            None,
            event.reference,
            event.hold_id,
        )
        for image in event.levels
    ]


def _finished(event: HoldFinished) -> list[FeedEvent]:
    units = _units(event.lines)
    sold = event.status == "committed"
    found = []
    for image in event.levels:
        held = units.get((image.sku, image.location), 0)
        before = _before(image.on_hand + held if sold else image.on_hand, image.reserved + held)
        kind = f"reservation.{event.status}"
        found.append(_event(kind, image, before, -held if sold else 0, None, None, event.hold_id))
    return found


def _crossing(kind: str) -> Callable[[Any], list[FeedEvent]]:
    """stock.low / stock.recovered: the level's available against its threshold."""

    def events(event: Any) -> list[FeedEvent]:
        return [
            {
                "type": kind,
                "sku": event.sku,
                "location": event.location,
                "before": None,
                "after": {"available": event.available},
                "delta": None,
                "reason": None,
                "reference": None,
                "version": None,
                "reservation_id": None,
                "low_stock_below": event.low_stock_below,
            }
        ]

    return events


_CONVERTERS: dict[str, Callable[[Any], list[FeedEvent]]] = {
    "StockAdjusted": _adjusted,
    "StockSet": _set,
    "StockTransferred": _transferred,
    "HoldPlaced": _placed,
    "HoldFinished": _finished,
    "StockRestocked": lambda event: [
        json.loads(item.text) for item in _restocked_items(event, 0, len(event.rows), 0, "{")
    ],
    "StockLow": _crossing("stock.low"),
    "StockRecovered": _crossing("stock.recovered"),
}


def events_of(event: Event) -> list[FeedEvent]:
    """The feed events of one domain event; none for bookkeeping (extensions, pruning, a
    reservation's records at its home shard, thresholds being set)."""
    convert = _CONVERTERS.get(type(event).__name__)
    return [] if convert is None else convert(event)


def rfc3339(at_ms: int) -> str:
    moment = datetime.fromtimestamp(at_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at_ms % 1000:03d}Z"


def _decode(events_json: str) -> list[Event]:
    """The record's events, built by the codec's replay decoders as recovery builds them (the
    log is our own writing): several times cheaper than the checked decoding, which dominated
    reading. The last few large records are kept decoded: readers page through a restock record
    of thousands of rows a share at a time, and decoding it whole each time was most of their
    cost."""
    if len(events_json) < _DECODED_KEPT_MIN_BYTES:
        return [REPLAY_DECODERS[row[0]](row) for row in decode_rows(events_json)]
    key = hash(events_json)
    cached = _decoded.get(key)
    if cached is not None and cached[0] == events_json:
        return cached[1]
    events = [REPLAY_DECODERS[row[0]](row) for row in decode_rows(events_json)]
    _decoded[key] = (events_json, events)
    while len(_decoded) > _DECODED_KEPT:
        del _decoded[next(iter(_decoded))]
    return events


# Decoded large records kept per process (a reader per shard: a few suffice).
_DECODED_KEPT = 8
_DECODED_KEPT_MIN_BYTES = 64 * 1024
_decoded: dict[int, tuple[str, list[Event]]] = {}


class FeedItem(NamedTuple):
    """An event as given out: its commit time, type and SKU (what readers sort, filter and
    route by) and its JSON text, encoded once, where the shard read it."""

    at_ms: int
    type: str
    sku: str | None
    text: str


_q = encode_basestring


def _text(value: str | None) -> str:
    return "null" if value is None else _q(value)


def _levels(before: dict[str, int], after: dict[str, int]) -> str:
    return (
        f'"before":{{"on_hand":{before["on_hand"]},"reserved":{before["reserved"]},'
        f'"available":{before["available"]}}},"after":{{"on_hand":{after["on_hand"]},'
        f'"reserved":{after["reserved"]},"available":{after["available"]}}}'
    )


def _body(event: FeedEvent) -> str:
    """The JSON of an event without its shard, LSN and time: formatted directly for level
    changes (twice as fast as the generic encoder), generically for the rest."""
    if event["before"] is None:
        return dumps(event)[1:-1]
    return (
        f'"type":"{event["type"]}","sku":{_q(event["sku"])},"location":{_q(event["location"])},'
        f'{_levels(event["before"], event["after"])},"delta":{event["delta"]},'
        f'"reason":{_text(event["reason"])},"reference":{_text(event["reference"])},'
        f'"version":{event["version"]},"reservation_id":{_text(event["reservation_id"])}'
    )


def _restocked_items(
    event: StockRestocked, low: int, high: int, at_ms: int, head: str
) -> list[FeedItem]:
    """Rows [low:high] of a restock as items, straight from its columns (no dicts)."""
    kind = "stock.adjusted" if event.mode == "delta" else "stock.set"
    tail = f',"reference":{_q("restock:" + event.job_id)},"reservation_id":null}}'
    rows = slice(low, high)
    return [
        FeedItem(
            at_ms,
            kind,
            sku,
            f'{head}"type":"{kind}","sku":{_q(sku)},"location":{_q(location)},'
            f'"before":{{"on_hand":{before},"reserved":{reserved},'
            f'"available":{before - reserved}}},'
            f'"after":{{"on_hand":{after},"reserved":{reserved},"available":{after - reserved}}},'
            f'"delta":{after - before},"version":{version},"reason":{_q(reason)}{tail}',
        )
        for sku, location, before, after, reserved, version, reason in zip(
            event.skus[rows],
            event.locations[rows],
            event.on_hand_before[rows],
            event.on_hand[rows],
            event.reserved[rows],
            event.versions[rows],
            event.reasons[rows],
            strict=True,
        )
    ]


def record_items(
    shard_id: int, lsn: int, at_ms: int, events_json: str, start: int = 0, stop: int | None = None
) -> tuple[list[FeedItem], int]:
    """The feed events [start:stop] of one log record, in order, as items; and how many
    events the record has in all."""
    found: list[FeedItem] = []
    total = 0
    head = f'{{"shard":{shard_id},"lsn":{lsn},"at":"{rfc3339(at_ms)}",'
    for event in _decode(events_json):
        if type(event) is StockRestocked:
            count = len(event.rows)
            low = max(start - total, 0)
            high = count if stop is None else min(max(stop - total, 0), count)
            if low < high:
                found.extend(_restocked_items(event, low, high, at_ms, head))
            total += count
            continue
        for item in events_of(event):
            if start <= total and (stop is None or total < stop):
                found.append(FeedItem(at_ms, item["type"], item["sku"], head + _body(item) + "}"))
            total += 1
    return found, total


def record_events(
    shard_id: int, lsn: int, at_ms: int, events_json: str, start: int = 0, stop: int | None = None
) -> tuple[list[FeedEvent], int]:
    """`record_items` as dicts (each with its shard, LSN and time)."""
    items, total = record_items(shard_id, lsn, at_ms, events_json, start, stop)
    return [json.loads(item.text) for item in items], total
