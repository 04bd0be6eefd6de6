"""The design most teams ship: FastAPI + uvicorn over PostgreSQL, a row-lock conditional update
per line in one transaction, committed with synchronous_commit on (durable).

    PG_DSN=postgresql://... uvicorn bench.baselines.postgres_app:app
"""

import os
from collections.abc import Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from bench.baselines.app_common import Lines, create_app

TAKE = "UPDATE stock SET available = available - $2 WHERE sku = $1 AND available >= $2"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, available BIGINT NOT NULL "
    "CHECK (available >= 0))"
)


class PostgresStore:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._pool: Any = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(self._dsn, min_size=4, max_size=32)
        async with self._pool.acquire() as conn:
            await conn.execute(SCHEMA)

    async def close(self) -> None:
        await self._pool.close()

    async def reserve(self, lines: Lines) -> bool:
        async with self._pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            # Rows locked in SKU order, as a careful team does: no deadlock between carts.
            for sku, quantity in sorted(lines):
                if await conn.execute(TAKE, sku, quantity) != "UPDATE 1":
                    await transaction.rollback()
                    return False
            await transaction.commit()
            return True

    async def reserve_batch(self, reservations: Sequence[Lines]) -> list[bool]:
        taken = [False] * len(reservations)
        # Concurrent batches lock rows in one order (by SKU), or they deadlock each other.
        order = sorted(range(len(reservations)), key=lambda i: sorted(reservations[i]))
        async with self._pool.acquire() as conn, conn.transaction():
            for index in order:
                # A savepoint per reservation: a short line undoes that reservation only.
                savepoint = conn.transaction()
                await savepoint.start()
                ok = True
                for sku, quantity in sorted(reservations[index]):
                    if await conn.execute(TAKE, sku, quantity) != "UPDATE 1":
                        ok = False
                        break
                await (savepoint.commit() if ok else savepoint.rollback())
                taken[index] = ok
        return taken

    async def set_stock(self, skus: Sequence[str], available: int) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO stock (sku, available) VALUES ($1, $2) "
                "ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available",
                [(sku, available) for sku in skus],
            )

    async def get(self, sku: str) -> int | None:
        async with self._pool.acquire() as conn:
            value = await conn.fetchval("SELECT available FROM stock WHERE sku = $1", sku)
            return None if value is None else int(value)


app = create_app(lambda: PostgresStore(os.environ["PG_DSN"]))
