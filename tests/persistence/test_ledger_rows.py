"""The log as ledger rows: one per SKU-location an event changed, with what the event says."""

import pyarrow as pa

from inventory_actors.domain import (
    Event,
    HoldExtended,
    HoldFinished,
    HoldLine,
    HoldPlaced,
    HoldStatus,
    LevelImage,
    ReservationOpened,
    StockAdjusted,
    StockRestocked,
    StockSet,
    StockTransferred,
)
from inventory_actors.feed.ledger_rows import LEDGER_SCHEMA, event_rows, ledger_table
from inventory_actors.shard.codec import encode_events

A = LevelImage("A", "berlin", 10, 3, 7)
B = LevelImage("A", "paris", 2, 0, 7)


def rows_of(table: pa.Table) -> list[dict[str, object]]:
    return [
        {key: value for key, value in row.items() if value is not None and key not in ("at",)}
        for row in table.to_pylist()
    ]


def test_every_kind_of_event_becomes_rows_with_what_it_says() -> None:
    events: list[Event] = [
        StockAdjusted(A, -2, "damaged", "d-1"),
        StockSet(A, 12, "cycle_count", None),
        StockTransferred(A, B, 2, "t-1"),
        HoldPlaced("h1", (HoldLine("A", "berlin", 3),), 99_000, "cart", (A,)),
        HoldFinished("h1", HoldStatus.COMMITTED, (A,)),
        HoldFinished("h2", HoldStatus.RELEASED, (A,)),
        HoldExtended("h1", 120_000),
        ReservationOpened("r1", (0, 1), (1,), 60_000, 70_000, None),
        StockRestocked(
            "rj-1", 0, "delta", (4, 9), ("A", "B"), ("x", "y"), (0, 5), (3, 6), (0, 1), (1, 8),
            ("restock", "received"),
        ),
    ]  # fmt: skip
    table = ledger_table(2, [(41, 1_700_000_000_000, encode_events(events))])
    assert table.schema == LEDGER_SCHEMA
    assert set(table["shard"].to_pylist()) == {2}
    assert set(table["lsn"].to_pylist()) == {41}
    assert table["at"][0].as_py().timestamp() == 1_700_000_000
    common = {"shard": 2, "lsn": 41}
    level = {"sku": "A", "location": "berlin", "on_hand": 10, "reserved": 3, "version": 7}
    assert rows_of(table) == [
        {**common, "type": "adjusted", **level, "delta": -2, "reason": "damaged",
         "reference": "d-1"},
        {**common, "type": "set", **level, "delta": -2, "reason": "cycle_count"},
        {**common, "type": "transferred", **level, "delta": -2, "reference": "t-1"},
        {**common, "type": "transferred", **level, "location": "paris", "on_hand": 2,
         "reserved": 0, "delta": 2, "reference": "t-1"},
        {**common, "type": "placed", **level, "delta": 0, "reference": "cart", "hold_id": "h1",
         "status": "active"},
        {**common, "type": "finished", **level, "hold_id": "h1", "status": "committed"},
        {**common, "type": "finished", **level, "delta": 0, "hold_id": "h2",
         "status": "released"},
        {**common, "type": "extended", "hold_id": "h1"},
        {**common, "type": "reservation-opened", "hold_id": "r1"},
        {**common, "type": "restocked", "sku": "A", "location": "x", "on_hand": 3,
         "reserved": 0, "version": 1, "delta": 3, "reason": "restock", "job_id": "rj-1"},
        {**common, "type": "restocked", "sku": "B", "location": "y", "on_hand": 6,
         "reserved": 1, "version": 8, "delta": 1, "reason": "received", "job_id": "rj-1"},
    ]  # fmt: skip


def test_the_row_by_row_and_the_columnar_restock_rows_agree() -> None:
    event = StockRestocked(
        "rj-1", 3, "set", (1, 2), ("A", "B"), ("x", "y"), (4, 5), (3, 6), (0, 1), (2, 8),
        ("cycle_count", "cycle_count"),
    )  # fmt: skip
    table = ledger_table(0, [(1, 0, encode_events([event]))])
    names = LEDGER_SCHEMA.names[4:]
    assert [tuple(row[name] for name in names) for row in table.to_pylist()] == event_rows(event)


def test_records_keep_their_order_and_an_empty_page_is_an_empty_table() -> None:
    first = encode_events([StockAdjusted(A, 5, "received", None)])
    second = encode_events([StockAdjusted(B, 2, "received", None)])
    table = ledger_table(0, [(1, 10, first), (2, 20, second)])
    assert table["lsn"].to_pylist() == [1, 2]
    assert table["location"].to_pylist() == ["berlin", "paris"]
    assert ledger_table(0, []).num_rows == 0
