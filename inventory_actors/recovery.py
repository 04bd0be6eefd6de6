"""Rebuilding a shard's ledger from its newest snapshot and the log after it."""

from inventory_actors.domain import Ledger
from persistence import ShardStore
from persistence.codec import decode_events, decode_rows


def recover_ledger(store: ShardStore, check_invariants: bool) -> tuple[Ledger, int, int]:
    """The ledger as the disk has it, its last LSN and how many log records were replayed."""
    ledger = Ledger()
    ledger.replaying = True
    snapshot = store.latest_snapshot()
    after_lsn = 0
    if snapshot is not None:
        after_lsn = snapshot.start_lsn
        for kind, payload in store.read_snapshot_chunks(snapshot.snapshot_id):
            rows = decode_rows(payload)
            if kind == "skus":
                ledger.load_skus(rows)
            elif kind == "holds":
                ledger.load_holds(rows)
            else:
                raise ValueError(f"unknown snapshot chunk kind {kind!r}")
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
