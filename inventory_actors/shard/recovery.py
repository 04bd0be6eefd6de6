"""Rebuilding a shard's ledger from its newest snapshot and the log after it."""

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from inventory_actors.domain import (
    Event,
    HoldExtended,
    HoldFinished,
    HoldLine,
    HoldPlaced,
    HoldsPruned,
    HoldStatus,
    Ledger,
    LevelImage,
    StockAdjusted,
    StockSet,
    StockTransferred,
)
from inventory_actors.shard.codec import EVENT_TAGS, decode_rows, event_from_row
from inventory_actors.shard.snapshots import HOLD_COLUMNS, RESERVATIONS, SKU_COLUMNS, THRESHOLDS
from persistence import ShardStore

# Log records are read and decoded this many at a time.
REPLAY_PAGE_RECORDS = 10_000

# Replay decodes the log it wrote itself, so it builds events with tuple.__new__, skipping the
# named tuples' Python-level constructors (and their field-count checks: the invariant check
# after recovery stands behind them). Same values as codec.decode_events (property-tested).
_new = tuple.__new__


def _image(raw: list[Any]) -> LevelImage:
    return _new(LevelImage, raw)


def _images(raw: list[list[Any]]) -> tuple[LevelImage, ...]:
    return tuple([_new(LevelImage, item) for item in raw])


def _lines(raw: list[list[Any]]) -> tuple[HoldLine, ...]:
    return tuple([_new(HoldLine, item) for item in raw])


# Each takes the whole tagged row: [tag, fields...].
_EVENT_BUILDERS: dict[type, Callable[[list[Any]], Event]] = {
    StockAdjusted: lambda r: _new(StockAdjusted, (_image(r[1]), r[2], r[3], r[4])),
    StockSet: lambda r: _new(StockSet, (_image(r[1]), r[2], r[3], r[4])),
    StockTransferred: lambda r: _new(StockTransferred, (_image(r[1]), _image(r[2]), r[3], r[4])),
    # Records written before coordinated holds existed have no seventh field.
    HoldPlaced: lambda r: _new(
        HoldPlaced, (r[1], _lines(r[2]), r[3], r[4], _images(r[5]), len(r) > 6 and r[6])
    ),
    # Records written before the change feed have no lines.
    HoldFinished: lambda r: _new(
        HoldFinished, (r[1], HoldStatus(r[2]), _images(r[3]), _lines(r[4]) if len(r) > 4 else ())
    ),
    HoldExtended: lambda r: _new(HoldExtended, (r[1], r[2])),
    HoldsPruned: lambda r: _new(HoldsPruned, (tuple(r[1]),)),
}
# Rarer events (reservations across shards) go through the codec's own decoders.
REPLAY_DECODERS: dict[str, Callable[[list[Any]], Event]] = {
    tag: event_from_row for tag in EVENT_TAGS.values()
}
REPLAY_DECODERS.update({EVENT_TAGS[kind]: build for kind, build in _EVENT_BUILDERS.items()})


def chunk_loaders(ledger: Ledger) -> dict[str, Callable[[Any], None]]:
    """How each kind of snapshot chunk, decoded, is loaded into `ledger`."""
    return {
        SKU_COLUMNS: ledger.load_sku_columns,
        HOLD_COLUMNS: ledger.load_hold_columns,
        RESERVATIONS: ledger.load_reservations,
        THRESHOLDS: ledger.load_thresholds,
        "skus": ledger.load_skus,  # row chunks, written before the columnar format
        "holds": ledger.load_holds,
    }


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Recovery allocates millions of long-lived objects and no garbage cycles: every
    collection the allocations trigger would traverse all of them for nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # Freezing then unfreezing moves every tracked object to the oldest generation in O(1)
        # and resets the allocation count; otherwise the first allocation after enabling starts
        # a young collection that traverses everything recovery allocated.
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


def recover_ledger(store: ShardStore, check_invariants: bool) -> tuple[Ledger, int, int]:
    """The ledger as the disk has it, its last LSN and how many log records were replayed."""
    with _no_cyclic_gc():
        return _recover(store, check_invariants)


def _recover(store: ShardStore, check_invariants: bool) -> tuple[Ledger, int, int]:
    ledger = Ledger()
    ledger.replaying = True
    snapshot = store.latest_snapshot()
    after_lsn = 0
    if snapshot is not None:
        after_lsn = snapshot.start_lsn
        loaders = chunk_loaders(ledger)
        for kind, payload in store.read_snapshot_chunks(snapshot.snapshot_id):
            load = loaders.get(kind)
            if load is None:
                raise ValueError(f"unknown snapshot chunk kind {kind!r}")
            load(decode_rows(payload))
    last_lsn, replayed = after_lsn, 0
    while True:
        page = store.read_log_events(last_lsn, REPLAY_PAGE_RECORDS)
        if page:
            replay_page(ledger, page)
            last_lsn, replayed = page[-1][0], replayed + len(page)
        if len(page) < REPLAY_PAGE_RECORDS:
            break
    ledger.replaying = False
    ledger.rebuild_indexes()
    if check_invariants:
        ledger.check_invariants()
    return ledger, max(last_lsn, store.last_lsn()), replayed


def replay_page(ledger: Ledger, records: Sequence[tuple[int, int, str]]) -> None:
    """Apply the events of (lsn, at_ms, events) records, in order. One JSON parse for the whole
    page: a parse per record costs more in call overhead than in parsing."""
    apply, decoders = ledger.apply, REPLAY_DECODERS
    pages = decode_rows("[" + ",".join([events for _, _, events in records]) + "]")
    for (_, at_ms, _), rows in zip(records, pages, strict=True):
        for row in rows:
            apply(decoders[row[0]](row), at_ms)
