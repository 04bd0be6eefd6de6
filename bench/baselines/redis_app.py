"""Redis with a Lua check-and-decrement: every line or none, atomically, in memory. Not
durable (no persistence): the fast upper anchor, not a design that keeps its promises.

    REDIS_URL=redis://... uvicorn bench.baselines.redis_app:app
"""

import os
from collections.abc import Sequence
from typing import Any

import redis.asyncio as redis

from bench.baselines.app_common import Lines, create_app

# KEYS: the SKUs; ARGV: their quantities. 1 if every line was taken, 0 if none was.
TAKE_ALL = """
for i, key in ipairs(KEYS) do
  local available = tonumber(redis.call('GET', key) or '-1')
  if available < tonumber(ARGV[i]) then return 0 end
end
for i, key in ipairs(KEYS) do redis.call('DECRBY', key, ARGV[i]) end
return 1
"""
PREFIX = "stock:"


class RedisStore:
    def __init__(self, url: str) -> None:
        self._url = url
        self._redis: Any = None
        self._sha = ""

    async def open(self) -> None:
        self._redis = redis.from_url(self._url, max_connections=64)
        self._sha = await self._redis.script_load(TAKE_ALL)

    async def close(self) -> None:
        await self._redis.aclose()

    async def reserve(self, lines: Lines) -> bool:
        return bool(await self._redis.evalsha(self._sha, *_arguments(lines)))

    async def reserve_batch(self, reservations: Sequence[Lines]) -> list[bool]:
        pipe = self._redis.pipeline(transaction=False)
        for lines in reservations:
            pipe.evalsha(self._sha, *_arguments(lines))
        return [bool(taken) for taken in await pipe.execute()]

    async def set_stock(self, skus: Sequence[str], available: int) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for sku in skus:
            pipe.set(PREFIX + sku, available)
        await pipe.execute()

    async def get(self, sku: str) -> int | None:
        value = await self._redis.get(PREFIX + sku)
        return None if value is None else int(value)


def _arguments(lines: Lines) -> list[Any]:
    """EVALSHA's arguments after the script: the key count, the keys, the quantities."""
    return [len(lines), *(PREFIX + sku for sku, _ in lines), *(q for _, q in lines)]


app = create_app(lambda: RedisStore(os.environ["REDIS_URL"]))
