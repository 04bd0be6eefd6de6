"""Durable storage of one shard: the write-ahead log, idempotency records and snapshots."""

from persistence.memory_store import MemoryShardStore
from persistence.port import ShardStore, epoch_at
from persistence.records import IdempotencyRecord, LogRecord, SnapshotInfo, StorageError
from persistence.sqlite_store import SqliteShardStore

__all__ = [
    "IdempotencyRecord",
    "LogRecord",
    "MemoryShardStore",
    "ShardStore",
    "SnapshotInfo",
    "SqliteShardStore",
    "StorageError",
    "epoch_at",
]
