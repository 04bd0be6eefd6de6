"""The schema of a shard file, created and migrated with sqlite-utils.

`PRAGMA user_version` holds the schema version; each migration moves it up by one.
"""

import sqlite3
from collections.abc import Callable

import sqlite_utils

SCHEMA_VERSION = 2


def _create_v1(db: sqlite_utils.Database) -> None:
    db["log"].create(  # type: ignore[union-attr]
        {"lsn": int, "at_ms": int, "command": str, "events": str},
        pk="lsn",
        not_null={"at_ms", "command", "events"},
    )
    db["idempotency"].create(  # type: ignore[union-attr]
        {"key": str, "fingerprint": str, "lsn": int, "result": str, "at_ms": int},
        pk="key",
        not_null={"fingerprint", "result", "at_ms"},
    )
    db["idempotency"].create_index(["at_ms"], index_name="idempotency_at_ms")  # type: ignore[union-attr]
    db["snapshots"].create(  # type: ignore[union-attr]
        {"snapshot_id": int, "start_lsn": int, "at_ms": int, "complete": int},
        pk="snapshot_id",
        not_null={"start_lsn", "at_ms", "complete"},
    )
    db["snapshot_chunks"].create(  # type: ignore[union-attr]
        {"snapshot_id": int, "seq": int, "kind": str, "payload": str},
        pk=("snapshot_id", "seq"),
        not_null={"kind", "payload"},
    )


def _add_replication_v2(db: sqlite_utils.Database) -> None:
    """The replica's identity and promise (`replica_meta`) and where each epoch starts."""
    db["replica_meta"].create(  # type: ignore[union-attr]
        {"key": str, "value": str}, pk="key", not_null={"value"}
    )
    db["epochs"].create(  # type: ignore[union-attr]
        {"epoch": int, "start_lsn": int}, pk="epoch", not_null={"start_lsn"}
    )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_create_v1, _add_replication_v2]
assert len(MIGRATIONS) == SCHEMA_VERSION


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file up to SCHEMA_VERSION; refuse a file written by a newer version."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"shard file has schema {version}, newer than {SCHEMA_VERSION}")
    db = sqlite_utils.Database(conn)
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[target - 1](db)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION
