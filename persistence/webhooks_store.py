"""Webhook subscriptions, their delivery cursors, dead letters and Idempotency-Keys, in one
SQLite file of the data directory. The cursor is written only after every event before it was
delivered or dead-lettered, so a restart delivers again rather than skips (at least once)."""

import json
import sqlite3
from pathlib import Path
from typing import Any, NamedTuple

import sqlite_utils

WEBHOOKS_FILE = "webhooks.sqlite"
DEAD_LETTERS_KEPT = 1_000
# An Idempotency-Key of a subscription is kept this long, as the shards keep theirs by default.
KEYS_KEPT_MS = 86_400_000


class Subscription(NamedTuple):
    subscription_id: str
    url: str
    events: tuple[str, ...]  # empty: every type
    # Kept as given: deliveries are signed with it (HMAC needs the secret itself).
    secret: str
    created_at_ms: int
    cursor: str | None
    delivered: int
    dead_letters: int


class DeadLetter(NamedTuple):
    subscription_id: str
    event: dict[str, Any]
    attempts: int
    error: str
    at_ms: int


def _create(db: sqlite_utils.Database) -> None:
    db["subscriptions"].create(  # type: ignore[union-attr]
        {
            "subscription_id": str,
            "url": str,
            "events": str,
            "secret": str,
            "created_at_ms": int,
            "cursor": str,
            "delivered": int,
            "dead_letters": int,
        },
        pk="subscription_id",
        not_null={"url", "events", "secret", "created_at_ms"},
    )
    db["dead_letters"].create(  # type: ignore[union-attr]
        {"seq": int, "subscription_id": str, "event": str, "attempts": int, "error": str,
         "at_ms": int},
        pk="seq",
    )  # fmt: skip
    db["dead_letters"].create_index(["subscription_id", "seq"])  # type: ignore[union-attr]


def _create_keys(db: sqlite_utils.Database) -> None:
    # `answer`: the subscription as first answered, without its secret (a replay shows it).
    db["idempotency_keys"].create(  # type: ignore[union-attr]
        {"key": str, "fingerprint": str, "answer": str, "at_ms": int},
        pk="key",
        not_null={"fingerprint", "answer", "at_ms"},
    )
    db["idempotency_keys"].create_index(["at_ms"])  # type: ignore[union-attr]


_SUBSCRIPTION = ", ".join(Subscription._fields)


def _subscription(row: tuple[Any, ...]) -> Subscription:
    values = list(row)
    values[2] = tuple(json.loads(values[2]))
    return Subscription(*values)


class WebhooksStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version < 1:
            _create(sqlite_utils.Database(self._conn))
            self._conn.execute("PRAGMA user_version = 1")
        if version < 2:
            _create_keys(sqlite_utils.Database(self._conn))
            self._conn.execute("PRAGMA user_version = 2")

    def add(self, subscription: Subscription) -> None:
        values = subscription._replace(events=json.dumps(list(subscription.events)))  # type: ignore[arg-type]
        marks = ", ".join("?" * len(Subscription._fields))
        self._conn.execute(f"INSERT INTO subscriptions ({_SUBSCRIPTION}) VALUES ({marks})", values)

    def add_once(
        self, subscription: Subscription, key: str, fingerprint: str
    ) -> tuple[Subscription, bool] | None:
        """`add` under an Idempotency-Key, atomically: (`subscription`, False) if the key is new;
        (the subscription as first answered, True) if it came with the same `fingerprint`;
        None if it came with another request."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.execute(
                "DELETE FROM idempotency_keys WHERE at_ms < ?",
                (subscription.created_at_ms - KEYS_KEPT_MS,),
            )
            row = self._conn.execute(
                "SELECT fingerprint, answer FROM idempotency_keys WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                self.add(subscription)
                answer = [subscription.subscription_id, subscription.url,
                          list(subscription.events), subscription.created_at_ms]  # fmt: skip
                self._conn.execute(
                    "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?)",
                    (key, fingerprint, json.dumps(answer), subscription.created_at_ms),
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        if row is None:
            return subscription, False
        if row[0] != fingerprint:
            return None
        subscription_id, url, events, created_at_ms = json.loads(row[1])
        first = Subscription(subscription_id, url, tuple(events), "", created_at_ms, None, 0, 0)
        return first, True

    def all(self) -> list[Subscription]:
        rows = self._conn.execute(
            f"SELECT {_SUBSCRIPTION} FROM subscriptions ORDER BY created_at_ms"
        ).fetchall()
        return [_subscription(row) for row in rows]

    def get(self, subscription_id: str) -> Subscription | None:
        row = self._conn.execute(
            f"SELECT {_SUBSCRIPTION} FROM subscriptions WHERE subscription_id = ?",
            (subscription_id,),
        ).fetchone()
        return None if row is None else _subscription(row)

    def remove(self, subscription_id: str) -> bool:
        with self._conn:
            self._conn.execute(
                "DELETE FROM dead_letters WHERE subscription_id = ?", (subscription_id,)
            )
            cursor = self._conn.execute(
                "DELETE FROM subscriptions WHERE subscription_id = ?", (subscription_id,)
            )
        return cursor.rowcount > 0

    def advance(
        self, subscription_id: str, cursor: str, delivered: int, dead: list[DeadLetter]
    ) -> None:
        """The page before `cursor` is done: `delivered` more delivered, `dead` given up."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            self._conn.executemany(
                "INSERT INTO dead_letters (subscription_id, event, attempts, error, at_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (d.subscription_id, json.dumps(d.event), d.attempts, d.error, d.at_ms)
                    for d in dead
                ],
            )
            updated = self._conn.execute(
                "UPDATE subscriptions SET cursor = ?, delivered = delivered + ?, "
                "dead_letters = dead_letters + ? WHERE subscription_id = ?",
                (cursor, delivered, len(dead), subscription_id),
            )
            if updated.rowcount == 0:  # deleted meanwhile: its dead letters went with it
                self._conn.execute("ROLLBACK")
                return
            if dead:
                self._conn.execute(
                    "DELETE FROM dead_letters WHERE subscription_id = ? AND seq <= "
                    "(SELECT seq FROM dead_letters WHERE subscription_id = ? "
                    "ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (subscription_id, subscription_id, DEAD_LETTERS_KEPT),
                )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def dead_letters(self, subscription_id: str, limit: int) -> list[DeadLetter]:
        rows = self._conn.execute(
            "SELECT subscription_id, event, attempts, error, at_ms FROM dead_letters "
            "WHERE subscription_id = ? ORDER BY seq DESC LIMIT ?",
            (subscription_id, limit),
        ).fetchall()
        return [DeadLetter(s, json.loads(e), a, err, at) for s, e, a, err, at in rows]

    def close(self) -> None:
        self._conn.close()
