"""Rebuilding a shard's ledger from its newest snapshot and the log after it."""

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from inventory_actors.domain import Ledger
from inventory_actors.domain.snapshot_io import (
    HOLD_COLUMNS,
    HOLD_ROWS,
    RESERVATIONS,
    SKU_COLUMNS,
    SKU_ROWS,
    THRESHOLDS,
)
from inventory_actors.shard.codec import REPLAY_DECODERS, decode_rows
from persistence import ShardStore

# Log records are read and decoded this many at a time.
REPLAY_PAGE_RECORDS = 10_000


def chunk_loaders(ledger: Ledger) -> dict[str, Callable[[Any], None]]:
    """How each kind of snapshot chunk, decoded, is loaded into `ledger`."""
    return {
        SKU_COLUMNS: ledger.load_sku_columns,
        HOLD_COLUMNS: ledger.load_hold_columns,
        RESERVATIONS: ledger.load_reservations,
        THRESHOLDS: ledger.load_thresholds,
        SKU_ROWS: ledger.load_skus,
        HOLD_ROWS: ledger.load_holds,
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
