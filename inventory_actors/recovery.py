"""Rebuilding a shard's ledger from its newest snapshot and the log after it."""

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from inventory_actors.domain import Ledger
from inventory_actors.snapshots import HOLD_COLUMNS, SKU_COLUMNS
from persistence import ShardStore
from persistence.codec import decode_events, decode_rows


def chunk_loaders(ledger: Ledger) -> dict[str, Callable[[Any], None]]:
    """How each kind of snapshot chunk, decoded, is loaded into `ledger`."""
    return {
        SKU_COLUMNS: ledger.load_sku_columns,
        HOLD_COLUMNS: ledger.load_hold_columns,
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
    apply = ledger.apply
    for record in store.iter_log(after_lsn):
        for event in decode_events(record.events):
            apply(event, record.at_ms)
        last_lsn = record.lsn
        replayed += 1
    ledger.replaying = False
    ledger.rebuild_indexes()
    if check_invariants:
        ledger.check_invariants()
    return ledger, max(last_lsn, store.last_lsn()), replayed


def freeze_recovered_state() -> None:
    """Move every object alive now (the recovered ledger above all) out of the collector's
    view, so later full collections do not traverse millions of long-lived objects.

    Call it once the previous ledger is dropped: a ledger frozen by an earlier recovery is
    unfrozen and collected first, since it may be held only by a reference cycle."""
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
    gc.freeze()
