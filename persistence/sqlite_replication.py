"""What a replica of a shard stores beyond the log, for the SQLite backend: its disk identity,
its promised epoch, where each epoch starts, and the writes of a follower copying another
replica."""

import sqlite3
import uuid
from abc import abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from persistence.records import IdempotencyRecord, LogRecord

_IDEMPOTENCY_COLUMNS = "key, fingerprint, lsn, result, at_ms"


def check_lsns_follow(conn: sqlite3.Connection, records: Sequence[LogRecord]) -> None:
    """The log only grows: each LSN above the last one written. A bug otherwise."""
    last = conn.execute("SELECT coalesce(max(lsn), 0) FROM log").fetchone()[0]
    for record in records:
        if record.lsn <= last:
            raise sqlite3.IntegrityError(f"lsn {record.lsn} does not follow {last}")
        last = record.lsn


class SqliteReplication:
    """The replication methods of SqliteShardStore, over its connection and helpers."""

    failing_appends: int
    _disk_id: str

    @abstractmethod
    def _transaction(self, what: str) -> AbstractContextManager[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; on any error ROLLBACK, and raise StorageError."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        """The rows of a read; StorageError if it fails."""

    def _load_disk_id(self) -> str:
        """The file's disk id, made and stored on the first open of the file."""
        with self._transaction("create disk id") as conn:
            conn.execute(
                "INSERT OR IGNORE INTO replica_meta VALUES ('disk_id', ?)", (uuid.uuid4().hex,)
            )
            row = conn.execute("SELECT value FROM replica_meta WHERE key = 'disk_id'").fetchone()
        return str(row[0])

    def disk_id(self) -> str:
        return self._disk_id

    # The promise and the epoch entries are read on every shipped batch: kept in memory too
    # (this store is its file's only writer), and written through.
    _promised: int | None = None
    _entries: list[tuple[int, int]] | None = None

    def promised_epoch(self) -> int:
        if self._promised is None:
            rows = self._query("SELECT value FROM replica_meta WHERE key = 'promised_epoch'", ())
            self._promised = int(rows[0][0]) if rows else 0
        return self._promised

    def promise_epoch(self, epoch: int) -> None:
        if epoch <= self.promised_epoch():
            return
        with self._transaction("promise_epoch") as conn:
            conn.execute(
                "INSERT OR REPLACE INTO replica_meta VALUES ('promised_epoch', ?)", (str(epoch),)
            )
        self._promised = epoch

    def epochs(self) -> list[tuple[int, int]]:
        if self._entries is None:
            rows = self._query("SELECT epoch, start_lsn FROM epochs ORDER BY start_lsn, epoch", ())
            self._entries = [(int(epoch), int(start_lsn)) for epoch, start_lsn in rows]
        return list(self._entries)

    def add_epoch(self, epoch: int, start_lsn: int) -> None:
        if any(known == epoch for known, _ in self.epochs()):
            return
        try:
            with self._transaction("add_epoch") as conn:
                conn.execute("INSERT OR IGNORE INTO epochs VALUES (?, ?)", (epoch, start_lsn))
        finally:
            self._entries = None

    def put_idempotency(self, records: Sequence[IdempotencyRecord]) -> None:
        if not records:
            return
        with self._transaction("put_idempotency") as conn:
            conn.executemany("INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)", records)

    def read_idempotency_since(
        self, at_ms: int, after_key: str, limit: int
    ) -> list[IdempotencyRecord]:
        # Walks the key index, skipping older records: one page costs at most a scan of the keys.
        rows = self._query(
            f"SELECT {_IDEMPOTENCY_COLUMNS} FROM idempotency WHERE key > ? AND at_ms >= ? "
            "ORDER BY key LIMIT ?",
            (after_key, at_ms, max(limit, 0)),
        )
        return [IdempotencyRecord(*row) for row in rows]

    def append_copied(
        self, records: Sequence[LogRecord], idempotency: Sequence[IdempotencyRecord] = ()
    ) -> None:
        if not records and not idempotency:
            return
        with self._transaction("append_copied") as conn:
            check_lsns_follow(conn, records)
            conn.executemany("INSERT INTO log VALUES (?, ?, ?, ?)", records)
            conn.executemany(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)", idempotency
            )
            if self.failing_appends > 0:
                self.failing_appends -= 1
                raise sqlite3.OperationalError("disk I/O error (injected)")

    def install_snapshot(
        self, start_lsn: int, at_ms: int, chunks: Sequence[tuple[str, str]]
    ) -> None:
        with self._transaction("install_snapshot") as conn:
            if conn.execute("SELECT 1 FROM log LIMIT 1").fetchone() is not None:
                raise sqlite3.IntegrityError("the log is not empty")
            cursor = conn.execute(
                "INSERT INTO snapshots VALUES (NULL, ?, ?, 1)", (start_lsn, at_ms)
            )
            snapshot_id = cursor.lastrowid
            conn.executemany(
                "INSERT INTO snapshot_chunks VALUES (?, ?, ?, ?)",
                [
                    (snapshot_id, seq, kind, payload)
                    for seq, (kind, payload) in enumerate(chunks, 1)
                ],
            )
            conn.execute("DELETE FROM snapshot_chunks WHERE snapshot_id <> ?", (snapshot_id,))
            conn.execute("DELETE FROM snapshots WHERE snapshot_id <> ?", (snapshot_id,))

    def wipe(self) -> None:
        self._entries = None
        disk_id = uuid.uuid4().hex
        with self._transaction("wipe") as conn:
            for table in ("log", "idempotency", "snapshot_chunks", "snapshots", "epochs"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("INSERT OR REPLACE INTO replica_meta VALUES ('disk_id', ?)", (disk_id,))
        self._disk_id = disk_id
