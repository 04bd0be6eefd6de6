"""The same design on SQLite: WAL, synchronous=FULL, `BEGIN IMMEDIATE` (one writer at a time),
the conditional update per line. Writes run on one thread, as SQLite serializes them anyway.

    SQLITE_PATH=stock.db uvicorn bench.baselines.sqlite_app:app
"""

import asyncio
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from bench.baselines.app_common import Lines, create_app

T = TypeVar("T")
TAKE = "UPDATE stock SET available = available - ? WHERE sku = ? AND available >= ?"


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        # One thread owns the connection: every statement runs there, in arrival order.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            assert self._conn is not None
            return work(self._conn)

        return await asyncio.get_running_loop().run_in_executor(self._thread, call)

    async def open(self) -> None:
        def connect() -> None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, "
                "available INTEGER NOT NULL CHECK (available >= 0))"
            )
            self._conn = conn

        await asyncio.get_running_loop().run_in_executor(self._thread, connect)

    async def close(self) -> None:
        await self._run(lambda conn: conn.close())
        self._thread.shutdown()

    async def reserve(self, lines: Lines) -> bool:
        return (await self.reserve_batch([lines]))[0]

    async def reserve_batch(self, reservations: Sequence[Lines]) -> list[bool]:
        def work(conn: sqlite3.Connection) -> list[bool]:
            taken = []
            conn.execute("BEGIN IMMEDIATE")
            try:
                for lines in reservations:
                    conn.execute("SAVEPOINT one")
                    ok = all(
                        conn.execute(TAKE, (quantity, sku, quantity)).rowcount == 1
                        for sku, quantity in lines
                    )
                    conn.execute("RELEASE one" if ok else "ROLLBACK TO one")
                    if not ok:
                        conn.execute("RELEASE one")
                    taken.append(ok)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return taken

        return await self._run(work)

    async def set_stock(self, skus: Sequence[str], available: int) -> None:
        def work(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO stock (sku, available) VALUES (?, ?) "
                "ON CONFLICT (sku) DO UPDATE SET available = excluded.available",
                [(sku, available) for sku in skus],
            )
            conn.execute("COMMIT")

        await self._run(work)

    async def get(self, sku: str) -> int | None:
        def work(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT available FROM stock WHERE sku = ?", (sku,)).fetchone()
            return None if row is None else int(row[0])

        return await self._run(work)


app = create_app(lambda: SqliteStore(os.environ["SQLITE_PATH"]))
