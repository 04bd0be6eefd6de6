"""The SQLite backend: one file per shard, WAL, `synchronous=FULL`, one transaction per batch."""

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from persistence.port import ShardStore
from persistence.records import IdempotencyRecord, LogRecord, SnapshotInfo, StorageError
from persistence.schema import migrate
from persistence.sqlite_replication import SqliteReplication, check_lsns_follow

# Parameters per statement stay well under SQLite's limit of 32,766.
_KEYS_PER_QUERY = 900


class SqliteShardStore(SqliteReplication, ShardStore):
    """A shard's log, idempotency records and snapshots in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are begun and ended explicitly below.
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._configure()
        migrate(self._conn)
        self._disk_id = self._load_disk_id()
        # Test hook: the next N appends fail inside their transaction, as a failing disk would.
        self.failing_appends = 0

    def _configure(self) -> None:
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StorageError(f"could not enable WAL on {self.path}: {mode}")
        # FULL: a commit is on disk (WAL fsynced) before it returns.
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute("PRAGMA foreign_keys=OFF")
        self._conn.execute("PRAGMA temp_store=MEMORY")

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; on any error ROLLBACK, and raise StorageError."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, UnicodeError) as error:
            raise StorageError(f"{what} failed: {error}") from error

    def append(
        self, records: Sequence[LogRecord], idempotency: Sequence[IdempotencyRecord]
    ) -> None:
        if not records and not idempotency:
            return
        with self._transaction("append") as conn:
            if records:
                check_lsns_follow(conn, records)
            conn.executemany("INSERT INTO log VALUES (?, ?, ?, ?)", records)
            conn.executemany("INSERT INTO idempotency VALUES (?, ?, ?, ?, ?)", idempotency)
            if self.failing_appends > 0:
                self.failing_appends -= 1
                raise sqlite3.OperationalError("disk I/O error (injected)")

    def stop_growing(self) -> None:
        """Test hook: the file may not grow from now on, as on a full disk: the next write that
        needs a new page fails with SQLITE_FULL. A reopened store grows again."""
        pages = self._conn.execute("PRAGMA page_count").fetchone()[0]
        self._conn.execute(f"PRAGMA max_page_count={int(pages)}")

    def find_idempotency(self, keys: Sequence[str]) -> dict[str, IdempotencyRecord]:
        found: dict[str, IdempotencyRecord] = {}
        for start in range(0, len(keys), _KEYS_PER_QUERY):
            chunk = keys[start : start + _KEYS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            columns = "key, fingerprint, lsn, result, at_ms"
            rows = self._query(f"SELECT {columns} FROM idempotency WHERE key IN ({marks})", chunk)
            found.update((row[0], IdempotencyRecord(*row)) for row in rows)
        return found

    def last_lsn(self) -> int:
        rows = self._query("SELECT max(lsn) FROM log", ())
        if rows[0][0] is not None:
            return int(rows[0][0])
        snapshot = self.latest_snapshot()
        return 0 if snapshot is None else snapshot.start_lsn

    def read_log(self, after_lsn: int, limit: int) -> list[LogRecord]:
        rows = self._query(
            "SELECT lsn, at_ms, command, events FROM log WHERE lsn > ? ORDER BY lsn LIMIT ?",
            (after_lsn, limit),
        )
        return [LogRecord(*row) for row in rows]

    def first_lsn(self) -> int:
        rows = self._query("SELECT min(lsn) FROM log", ())
        return int(rows[0][0]) if rows[0][0] is not None else self.last_lsn() + 1

    def prune_log(self, up_to_lsn: int, before_ms: int, limit: int) -> int:
        # Only an unbroken run of the oldest records goes, so the log stays a contiguous range
        # of LSNs even if the clock stepped back: a reader past the first LSN misses nothing.
        oldest = self._query(
            "SELECT lsn, at_ms FROM log WHERE lsn <= ? ORDER BY lsn LIMIT ?",
            (up_to_lsn, max(limit, 0)),
        )
        last = None
        for lsn, at_ms in oldest:
            if at_ms >= before_ms:
                break
            last = lsn
        if last is None:
            return 0
        return self._write("DELETE FROM log WHERE lsn <= ?", (last,)).rowcount

    def read_log_matching(
        self, needle: str, until_ms: int, before_lsn: int, limit: int
    ) -> list[tuple[int, int, str]]:
        # A scan from the newest record back, with SQLite comparing text in C: the log has no
        # index by SKU (yet); a SKU's recent history is found quickly, an old one reads more.
        return self._query(
            "SELECT lsn, at_ms, events FROM log WHERE lsn < ? AND at_ms <= ? "
            "AND instr(events, ?) > 0 ORDER BY lsn DESC LIMIT ?",
            (before_lsn, until_ms, needle, limit),
        )

    def read_log_page(
        self, after_lsn: int, limit: int, byte_limit: int
    ) -> list[tuple[int, int, str]]:
        # SQLite hands rows over one step at a time: stop stepping at the byte limit.
        try:
            rows = self._conn.execute(
                "SELECT lsn, at_ms, events FROM log WHERE lsn > ? ORDER BY lsn LIMIT ?",
                (after_lsn, limit),
            )
            page: list[tuple[int, int, str]] = []
            size = 0
            for row in rows:
                page.append(row)
                size += len(row[2])
                if size > byte_limit:
                    break
            rows.close()
        except sqlite3.Error as error:
            raise StorageError(f"read failed: {error}") from error
        return page

    def read_log_events(self, after_lsn: int, limit: int) -> list[tuple[int, int, str]]:
        # Neither the command column nor a LogRecord per row: recovery reads 100,000s of them.
        return self._query(
            "SELECT lsn, at_ms, events FROM log WHERE lsn > ? ORDER BY lsn LIMIT ?",
            (after_lsn, limit),
        )

    def begin_snapshot(self, start_lsn: int, at_ms: int) -> int:
        self._write("INSERT INTO snapshots VALUES (NULL, ?, ?, 0)", (start_lsn, at_ms))
        rows = self._query("SELECT max(snapshot_id) FROM snapshots", ())
        return int(rows[0][0])

    def add_snapshot_chunk(self, snapshot_id: int, kind: str, payload: str) -> None:
        self._write(
            "INSERT INTO snapshot_chunks VALUES (?, "
            "(SELECT coalesce(max(seq), 0) + 1 FROM snapshot_chunks WHERE snapshot_id = ?), ?, ?)",
            (snapshot_id, snapshot_id, kind, payload),
        )

    def finish_snapshot(self, snapshot_id: int, keep: int) -> None:
        with self._transaction("finish_snapshot") as conn:
            conn.execute("UPDATE snapshots SET complete = 1 WHERE snapshot_id = ?", (snapshot_id,))
            stale = (
                "SELECT snapshot_id FROM snapshots WHERE complete = 1 "
                "ORDER BY snapshot_id DESC LIMIT -1 OFFSET ?"
            )
            doomed = [row[0] for row in conn.execute(stale, (max(keep, 1),))]
            unfinished = "SELECT snapshot_id FROM snapshots WHERE complete = 0 AND snapshot_id < ?"
            doomed += [row[0] for row in conn.execute(unfinished, (snapshot_id,))]
            for old in doomed:
                conn.execute("DELETE FROM snapshot_chunks WHERE snapshot_id = ?", (old,))
                conn.execute("DELETE FROM snapshots WHERE snapshot_id = ?", (old,))

    def latest_snapshot(self) -> SnapshotInfo | None:
        rows = self._query(
            "SELECT snapshot_id, start_lsn, at_ms FROM snapshots WHERE complete = 1 "
            "ORDER BY snapshot_id DESC LIMIT 1",
            (),
        )
        return SnapshotInfo(*rows[0]) if rows else None

    def read_snapshot_chunks(self, snapshot_id: int) -> Iterator[tuple[str, str]]:
        seq = 0
        while True:
            rows = self._query(
                "SELECT seq, kind, payload FROM snapshot_chunks WHERE snapshot_id = ? AND seq > ? "
                "ORDER BY seq LIMIT 16",
                (snapshot_id, seq),
            )
            for row in rows:
                yield row[1], row[2]
            if len(rows) < 16:
                return
            seq = rows[-1][0]

    def prune_idempotency(self, before_ms: int, limit: int) -> int:
        cursor = self._write(
            "DELETE FROM idempotency WHERE key IN "
            "(SELECT key FROM idempotency WHERE at_ms < ? ORDER BY at_ms LIMIT ?)",
            (before_ms, max(limit, 0)),
        )
        return cursor.rowcount

    def close(self) -> None:
        self._conn.close()

    def file_bytes(self) -> int:
        """Bytes of the database file and its WAL."""
        wal = Path(f"{self.path}-wal")
        return os.path.getsize(self.path) + (os.path.getsize(wal) if wal.exists() else 0)

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise StorageError(f"read failed: {error}") from error

    def _write(self, sql: str, params: Sequence[object]) -> sqlite3.Cursor:
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as error:
            raise StorageError(f"write failed: {error}") from error
