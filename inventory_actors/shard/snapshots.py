"""Fuzzy snapshots taken in the background, chunk by chunk, between batches.

A snapshot records `start_lsn`, then copies the state while the shard keeps writing: replaying
the log after `start_lsn` sets every value it touches (events carry post-images), so recovery
converges on exactly the live state (docs/engine.md, Recovery and snapshots)."""

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Protocol, TypeVar

from inventory_actors.domain import Ledger
from inventory_actors.domain.snapshot_io import HOLD_COLUMNS, RESERVATIONS, SKU_COLUMNS, THRESHOLDS
from inventory_actors.shard.codec import encode_rows
from inventory_actors.shard.config import ShardConfig
from persistence import ShardStore

log = logging.getLogger(__name__)


class SnapshotSource(Protocol):
    """What a snapshot reads of its shard (`ShardCore`), read anew at each step: a recovery
    replaces the store and the ledger while a snapshot is being taken."""

    @property
    def shard_id(self) -> int: ...

    @property
    def config(self) -> ShardConfig: ...

    @property
    def store(self) -> ShardStore | None: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def last_lsn(self) -> int: ...


T = TypeVar("T")


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Snapshotter:
    def __init__(self, source: SnapshotSource) -> None:
        self._source = source
        self.records_since = 0
        self.last_started_ms = 0
        self.last_start_lsn = 0
        self.completed = 0
        self._task: asyncio.Task[bool] | None = None

    def reset(self, records_since: int, now_ms: int) -> None:
        self.records_since = records_since
        self.last_started_ms = now_ms

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def maybe_start(self, now_ms: int) -> None:
        config = self._source.config
        if self.running or self.records_since == 0:
            return
        old_ms = now_ms - self.last_started_ms >= config.snapshot_every_seconds * 1000
        if self.records_since >= config.snapshot_every_records or old_ms:
            self.start(now_ms)

    def start(self, now_ms: int) -> "asyncio.Task[bool]":
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._take(now_ms))
        return self._task

    def abort(self) -> None:
        if self.running and self._task is not None:
            self._task.cancel()

    async def _take(self, now_ms: int) -> bool:
        source = self._source
        store, ledger = source.store, source.ledger
        if store is None:
            return False
        start_lsn = source.last_lsn
        self.last_started_ms, self.last_start_lsn = now_ms, start_lsn
        counted_at_start = self.records_since
        try:
            snapshot_id = store.begin_snapshot(start_lsn, now_ms)
            size = source.config.snapshot_chunk_rows
            # SKUs are chunked by their levels, so a chunk costs about the same however many
            # locations each SKU has.
            sku_ids, start = list(ledger.skus), 0
            while start < len(sku_ids):
                if source.store is not store:  # the shard recovered meanwhile
                    return False
                columns, start = ledger.export_sku_columns(sku_ids, start, size)
                store.add_snapshot_chunk(snapshot_id, SKU_COLUMNS, encode_rows(columns))
                await asyncio.sleep(0)
            keyed_chunks = (
                (HOLD_COLUMNS, list(ledger.holds), ledger.export_hold_columns),
                (RESERVATIONS, list(ledger.reservations), ledger.export_reservations),
            )
            for kind, ids, export in keyed_chunks:
                for chunk in _chunks(ids, size):
                    if source.store is not store:
                        return False
                    store.add_snapshot_chunk(snapshot_id, kind, encode_rows(export(chunk)))
                    await asyncio.sleep(0)
            for keys in _chunks(list(ledger.thresholds), size):
                if source.store is not store:
                    return False
                rows = ledger.export_thresholds(keys)
                store.add_snapshot_chunk(snapshot_id, THRESHOLDS, encode_rows(rows))
                await asyncio.sleep(0)
            store.finish_snapshot(snapshot_id, source.config.snapshots_kept)
        except Exception:
            log.exception("shard %d: snapshot failed", source.shard_id)
            return False
        self.records_since = max(self.records_since - counted_at_start, 0)
        self.completed += 1
        log.info("shard %d: snapshot at lsn %d complete", source.shard_id, start_lsn)
        return True
