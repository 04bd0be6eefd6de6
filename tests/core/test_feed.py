"""The feed's pure parts: cursors, a record's events, pages that end inside a record, merging
shards oldest first, stepping over records without events, and a SKU's levels as of a time."""

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_actors.domain import (
    HoldExtended,
    HoldFinished,
    HoldLine,
    HoldPlaced,
    HoldStatus,
    LevelImage,
    LocationView,
    SkuView,
    StockAdjusted,
    StockRestocked,
)
from inventory_actors.feed.as_of import sku_as_of
from inventory_actors.shard.codec import decode_events, encode_events
from inventory_actors.shard.feed_pages import (
    Cursor,
    CursorInvalid,
    Position,
    events_of,
    merge_pages,
    record_events,
    record_items,
    rfc3339,
    shard_events,
)

A = LevelImage("A", "x", 10, 2, 5)


def restock(rows: int) -> str:
    """A record of `rows` restocked rows of SKU R, at locations L0, L1, ..."""
    locations = tuple(f"L{i}" for i in range(rows))
    zeros, ones = (0,) * rows, (1,) * rows
    event = StockRestocked(
        "rj", 0, "delta", tuple(range(rows)), ("R",) * rows, locations, zeros, ones, zeros,
        tuple(range(1, rows + 1)), ("restock",) * rows,
    )  # fmt: skip
    return encode_events([event])


def test_a_cursor_round_trips_and_a_foreign_one_is_refused() -> None:
    cursor = Cursor((Position(12, 3), Position(1, 0), Position(7, 0)))
    assert Cursor.decode(cursor.encode(), 3) == cursor
    bogus = Cursor((Position(0, 2), Position(1, 0), Position(1, 0))).encode()
    for token in ("", "x", "f1@@@", cursor.encode()[:-2] + "!!", Cursor.start(2).encode(), bogus):
        with pytest.raises(CursorInvalid):
            Cursor.decode(token, 3)


def test_a_held_position_0_means_the_shards_first_record_not_the_oldest_kept() -> None:
    """Only a reader without a cursor starts at the oldest record kept (`Cursor.start`); a
    position 0 a client holds names LSN 1, which the reader refuses once it is pruned."""
    held = Cursor((Position(0, 0), Position(5, 1)))
    assert Cursor.decode(held.encode(), 2) == Cursor((Position(1, 0), Position(5, 1)))
    assert Cursor.decode(Cursor.start(2).encode(), 2) == Cursor((Position(1, 0),) * 2)


def test_each_kind_of_change_tells_before_and_after() -> None:
    placed = HoldPlaced("h1", (HoldLine("A", "x", 2),), 9, "cart", (A,))
    finished = HoldFinished("h1", HoldStatus.COMMITTED, (LevelImage("A", "x", 8, 0, 6),),
                            (HoldLine("A", "x", 2),))  # fmt: skip
    text = encode_events(
        [StockAdjusted(A, 4, "received", "po"), placed, finished, HoldExtended("h1", 5)]
    )
    events, total = record_events(1, 9, 1_700_000_000_123, text)
    assert total == 3
    adjusted, created, committed = events
    assert adjusted["before"] == {"on_hand": 6, "reserved": 2, "available": 4}
    assert adjusted["after"] == {"on_hand": 10, "reserved": 2, "available": 8}
    assert created["type"] == "reservation.created" and created["reservation_id"] == "h1"
    assert created["before"] == {"on_hand": 10, "reserved": 0, "available": 10}
    assert committed["type"] == "reservation.committed" and committed["delta"] == -2
    assert committed["before"] == {"on_hand": 10, "reserved": 2, "available": 8}
    assert adjusted["at"] == "2023-11-14T22:13:20.123Z"
    assert {e["shard"] for e in events} == {1} and {e["lsn"] for e in events} == {9}


def test_a_page_may_end_inside_a_record_and_the_next_continues_there() -> None:
    records = [
        (1, 100, restock(5)),
        (2, 200, encode_events([HoldExtended("h", 1)])),
        (3, 300, restock(2)),
    ]
    first = shard_events(0, Position(0, 0), records, 3)
    assert [json.loads(text)["location"] for text in first.texts] == ["L0", "L1", "L2"]
    assert first.end == Position(1, 3)
    second = shard_events(0, first.end, records, 10)
    parsed = [json.loads(text) for text in second.texts]
    assert [(e["lsn"], e["location"]) for e in parsed] == [
        (1, "L3"), (1, "L4"), (3, "L0"), (3, "L1"),
    ]  # fmt: skip
    assert second.end == Position(4, 0)
    # A page of records without events moves the cursor past them all the same.
    empty = shard_events(0, Position(2, 0), records[1:2], 10)
    assert (empty.texts, empty.end) == ([], Position(3, 0))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), max_size=6), min_size=2, max_size=3), st.integers(1, 7))
def test_reading_page_by_page_gives_every_event_once_in_each_shards_order(
    shards: list[list[int]], limit: int
) -> None:
    """Shards of records with 0 to 5 events each, read in pages of `limit`."""
    logs = [
        [(lsn, lsn * 10 + shard_id, restock(count)) for lsn, count in enumerate(counts, start=1)]
        for shard_id, counts in enumerate(shards)
    ]
    cursor = Cursor.start(len(logs))
    seen: list[tuple[int, int, str]] = []
    for _ in range(200):
        pages = [
            shard_events(
                s, cursor.positions[s], [r for r in log if r[0] >= cursor.positions[s].lsn], limit
            )
            for s, log in enumerate(logs)
        ]
        merged = merge_pages(cursor, pages, limit)
        assert merged.start == cursor
        events = [json.loads(text) for text in merged.texts()]
        seen.extend((e["shard"], e["lsn"], e["location"]) for e in events)
        cursor = merged.cursor
        if not merged.order:
            break
    expected = [
        (shard_id, lsn, f"L{i}") for shard_id, counts in enumerate(shards)
        for lsn, count in enumerate(counts, start=1) for i in range(count)
    ]  # fmt: skip
    assert sorted(seen) == sorted(expected)
    assert len(seen) == len(set(seen))
    for shard_id in range(len(shards)):
        mine = [item for item in seen if item[0] == shard_id]
        assert mine == sorted(mine, key=lambda item: (item[1], int(item[2][1:])))


def test_the_encoded_text_of_an_event_is_the_event() -> None:
    """Items are formatted by hand for speed: they must parse to the converters' dicts."""
    placed = HoldPlaced("h1", (HoldLine("A", "x", 2),), 9, 'cart "7"', (A,))
    text = encode_events([StockAdjusted(A, 4, "received", None), placed])
    items, _ = record_items(3, 8, 1_000, text)
    for item, event in zip(items, events_of_record(text), strict=True):
        assert json.loads(item.text) == {**event, "shard": 3, "lsn": 8, "at": rfc3339(1_000)}
        assert (item.type, item.sku, item.at_ms) == (event["type"], event["sku"], 1_000)
    restocked, _ = record_items(0, 1, 5, restock(3), 1, 3)
    assert [json.loads(item.text)["location"] for item in restocked] == ["L1", "L2"]
    assert json.loads(restocked[0].text)["reference"] == "restock:rj"


def events_of_record(text: str) -> list[dict[str, object]]:
    return [item for event in decode_events(text) for item in events_of(event)]


def test_as_of_takes_each_level_from_its_newest_change_by_then_never_from_an_alert() -> None:
    def change(location: str, before: int, after: int, version: int) -> dict[str, Any]:
        images = [{"on_hand": n, "reserved": 0, "available": n} for n in (before, after)]
        return {"location": location, "before": images[0], "after": images[1], "version": version}

    alert: dict[str, Any] = {"location": "x", "before": None, "after": {"available": 1}}
    now = SkuView("A", 4, (LocationView("x", 9, 0), LocationView("y", 2, 0)))
    # Newest first: y created at 30, an alert of x at 25, x's change at 10.
    events = [(30, change("y", 0, 2, 4)), (25, alert), (10, change("x", 0, 1, 2))]
    assert sku_as_of(now, 26, events, complete=True) == SkuView("A", 2, (LocationView("x", 1, 0),))
    assert sku_as_of(now, 5, events[2:], complete=True) is None
    # Not complete (the log was pruned): a level with no change by then is as before its
    # oldest change after, or as now when it has none.
    assert sku_as_of(now, 26, events[:1]) == SkuView("A", 3, (LocationView("x", 9, 0),))
