"""Awaiting shard actor calls with a deadline; a call that fails or times out becomes
ShardUnavailable (its outcome is unknown: retry with the same idempotency key)."""

import asyncio
from typing import Any

from ray.exceptions import GetTimeoutError, RayError

from inventory_actors.cluster.wire import decode_outcomes
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.protocol import Outcome


async def await_outcomes(
    shard_id: int, size: int, ref: Any, timeout_seconds: float
) -> list[Outcome]:
    try:
        return decode_outcomes(await asyncio.wait_for(ref, timeout_seconds))
    except (RayError, TimeoutError) as error:
        return [Outcome(unavailable(shard_id, error))] * size


async def await_read(shard_id: int, ref: Any, timeout_seconds: float) -> Any:
    try:
        return await asyncio.wait_for(ref, timeout_seconds)
    except (RayError, TimeoutError) as error:
        cause = getattr(error, "cause", None)
        if isinstance(cause, ShardUnavailable):
            raise cause from None
        raise unavailable(shard_id, error) from error


def unavailable(shard_id: int, error: BaseException) -> ShardUnavailable:
    if isinstance(error, GetTimeoutError | TimeoutError):
        return ShardUnavailable(shard_id, "shard did not answer in time; outcome unknown")
    return ShardUnavailable(shard_id, f"shard is down or restarting: {type(error).__name__}")
