"""Restock jobs' records in one SQLite file of the data directory: what each job is (its id bound
to its file's digest), how far it got and how it ended. The chunks a record counts done are
never sent again, however long after their idempotency keys have expired (docs/restock.md,
Exactly once)."""

import json
import sqlite3
from pathlib import Path
from typing import Any, NamedTuple

import sqlite_utils

JOBS_FILE = "restock-jobs.sqlite"
SCHEMA_VERSION = 2
# The first rejects a record keeps (all of them go to the CLI's rejects file).
REJECTS_KEPT = 100


class JobRecord(NamedTuple):
    job_id: str
    status: str  # running, succeeded, failed
    mode: str
    file_format: str
    source: str
    digest: str
    rows_total: int | None
    rows_read: int
    rows_applied: int
    rows_rejected: int
    chunks_done: int
    # (row, reason) of the first REJECTS_KEPT rejected rows, by row number.
    rejects: tuple[tuple[int, str], ...]
    error: str | None
    attempt: int
    created_at_ms: int
    updated_at_ms: int
    finished_at_ms: int | None
    # A running job whose runner has not reported by then has been interrupted.
    lease_until_ms: int
    # When chunk `chunks_done` was first sent to the shards (None: not yet); its keys are kept
    # for the shards' idempotency retention from about then.
    chunk_sent_at_ms: int | None = None


def _create_v1(db: sqlite_utils.Database) -> None:
    db["jobs"].create(  # type: ignore[union-attr]
        {
            "job_id": str,
            "status": str,
            "mode": str,
            "file_format": str,
            "source": str,
            "digest": str,
            "rows_total": int,
            "rows_read": int,
            "rows_applied": int,
            "rows_rejected": int,
            "chunks_done": int,
            "rejects": str,
            "error": str,
            "attempt": int,
            "created_at_ms": int,
            "updated_at_ms": int,
            "finished_at_ms": int,
            "lease_until_ms": int,
        },
        pk="job_id",
        not_null={"status", "mode", "file_format", "source", "digest", "created_at_ms"},
    )
    db["jobs"].create_index(["created_at_ms"], index_name="jobs_created")  # type: ignore[union-attr]


_COLUMNS = ", ".join(JobRecord._fields)


def _record(row: tuple[Any, ...]) -> JobRecord:
    values = dict(zip(JobRecord._fields, row, strict=True))
    values["rejects"] = tuple(tuple(item) for item in json.loads(values["rejects"] or "[]"))
    return JobRecord(**values)


class JobsStore:
    """Job records; one writer (the jobs actor), so no locking beyond SQLite's own."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._migrate()

    def _migrate(self) -> None:
        version: int = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"jobs file has schema {version}, newer than {SCHEMA_VERSION}")
        if version == SCHEMA_VERSION:
            return
        # One transaction: a migration cut short leaves the file as it was.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            if version < 1:
                _create_v1(sqlite_utils.Database(self._conn))
            if version < 2:
                self._conn.execute("ALTER TABLE jobs ADD COLUMN chunk_sent_at_ms INTEGER")
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def get(self, job_id: str) -> JobRecord | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
        return None if row is None else _record(row)

    def recent(self, limit: int) -> list[JobRecord]:
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM jobs ORDER BY created_at_ms DESC LIMIT ?", (limit,)
        ).fetchall()
        return [_record(row) for row in rows]

    def put(self, record: JobRecord) -> None:
        values = record._replace(rejects=json.dumps(record.rejects))  # type: ignore[arg-type]
        marks = ", ".join("?" * len(JobRecord._fields))
        self._conn.execute(f"INSERT OR REPLACE INTO jobs ({_COLUMNS}) VALUES ({marks})", values)

    def close(self) -> None:
        self._conn.close()
