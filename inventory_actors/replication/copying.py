"""A replica copies what it lacks from another one: the log after its own end, the idempotency
records written since, or, when its log diverged or the other one pruned it, everything from
that replica's newest snapshot on."""

import logging
from typing import Any

from inventory_actors.replication.protocol import SnapshotCopy, TailPage
from inventory_actors.shard.core import ShardCore
from persistence import epoch_at

log = logging.getLogger(__name__)

# Log records per page copied, and idempotency records per page.
TAIL_PAGE_RECORDS = 2_000
IDEMPOTENCY_PAGE_RECORDS = 2_000


def read_tail(core: ShardCore, after_lsn: int, after_epoch: int, limit: int) -> TailPage | None:
    """The records after (`after_lsn`, `after_epoch`) of this replica's log; None if the
    caller's log diverged from this one there, or this one no longer holds what follows."""
    store = core.store
    core.require_store()
    assert store is not None
    entries = store.epochs()
    last_lsn = core.last_lsn
    if after_lsn > last_lsn or epoch_at(entries, after_lsn) != after_epoch:
        return None
    if after_lsn < store.first_lsn() - 1:
        return None
    records = store.read_log(after_lsn, max(1, min(limit, TAIL_PAGE_RECORDS)))
    return TailPage(records, entries, last_lsn)


def export_snapshot(core: ShardCore) -> SnapshotCopy | None:
    store = core.store
    core.require_store()
    assert store is not None
    snapshot = store.latest_snapshot()
    if snapshot is None:
        return None
    chunks = list(store.read_snapshot_chunks(snapshot.snapshot_id))
    return SnapshotCopy(snapshot.start_lsn, snapshot.at_ms, chunks, store.epochs())


async def copy_from(core: ShardCore, source: Any) -> int:
    """Make this replica's disk and memory hold `source`'s log: its tail if this log is a
    prefix of that one, else everything from its newest snapshot (a whole copy). Returns how
    many whole copies it took. Raises on failure (the caller tries again later); whatever was
    copied is durable and consistent. Nothing else may write to the store meanwhile."""
    try:
        return await _copy(core, source)
    except BaseException:
        if core.installing and core.store is not None:
            # A whole copy cut short: a snapshot without the log it needs is no state.
            core.store.wipe()
            core.rebuild()
        raise
    finally:
        core.installing = False


async def _copy(core: ShardCore, source: Any) -> int:
    since_ms = core.log_time_ms
    whole, installing = 0, False
    while True:
        store = core.store
        assert store is not None
        last_lsn = store.last_lsn() if installing else core.last_lsn
        page: TailPage | None = await source.read_tail.remote(
            last_lsn, epoch_at(store.epochs(), last_lsn), TAIL_PAGE_RECORDS
        )
        if page is None:
            if installing:
                raise RuntimeError(f"shard {core.shard_id}: the source pruned during a copy")
            core.installing = installing = True
            await _install(core, source)
            since_ms, whole = 0, whole + 1
            continue
        for epoch, start_lsn in page.epochs:
            store.add_epoch(epoch, start_lsn)
        if page.records and installing:
            # To disk only: memory is rebuilt from the snapshot and the whole log after it,
            # which a snapshot taken while its shard kept writing needs to be consistent.
            store.append_copied(page.records)
        elif page.records:
            # Shipped batches may have landed meanwhile: take only what follows this log.
            fresh = [record for record in page.records if record.lsn > core.last_lsn]
            if fresh and fresh[0].lsn != core.last_lsn + 1:
                continue
            core.apply_copied(fresh, [])
        await _copy_idempotency(core, source, since_ms)
        if not page.records:
            if installing and not core.rebuild():
                raise RuntimeError(f"shard {core.shard_id}: could not rebuild after a copy")
            return whole
        since_ms = page.records[-1].at_ms


async def _copy_idempotency(core: ShardCore, source: Any, since_ms: int) -> None:
    after_key = ""
    while True:
        rows = await source.read_idempotency.remote(since_ms, after_key, IDEMPOTENCY_PAGE_RECORDS)
        if rows:
            core.apply_copied([], rows)
            after_key = rows[-1].key
        if len(rows) < IDEMPOTENCY_PAGE_RECORDS:
            return


async def _install(core: ShardCore, source: Any) -> None:
    """Empty this replica's file (it takes a new disk id: it votes again only once caught up)
    and install `source`'s newest snapshot; the log after it is copied next."""
    copy: SnapshotCopy | None = await source.export_snapshot.remote()
    store = core.store
    assert store is not None
    log.warning("shard %d: log diverged or pruned; copying it whole", core.shard_id)
    # A snapshot being taken of the old state must not finish on the new one.
    core.snapshots.abort()
    store.wipe()
    if copy is not None:
        store.install_snapshot(copy.start_lsn, copy.at_ms, copy.chunks)
        for epoch, start_lsn in copy.epochs:
            store.add_epoch(epoch, start_lsn)
