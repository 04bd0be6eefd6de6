"""Awaiting shard actor calls with a deadline; a call that fails or times out becomes
ShardUnavailable (its outcome is unknown: retry with the same idempotency key)."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ray.exceptions import GetTimeoutError, RayError

from inventory_actors.cluster.wire import decode_outcomes
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.protocol import Outcome

# A call to a replicated shard checks this often whether its primary was replaced meanwhile.
SUPERSEDED_CHECK_SECONDS = 0.1


async def await_outcomes(
    shard_id: int,
    size: int,
    ref: Any,
    timeout_seconds: float,
    superseded: Callable[[], bool] | None = None,
) -> list[Outcome]:
    """The call's outcomes; ShardUnavailable for each if it fails, times out, or, when
    `superseded` says so, went to a primary that another one replaced meanwhile (a frozen or
    lost primary answers late or never; its outcome is unknown, not waited for)."""
    try:
        if superseded is None:
            return decode_outcomes(await asyncio.wait_for(ref, timeout_seconds))
        return decode_outcomes(await _unless_superseded(ref, timeout_seconds, superseded))
    except (RayError, TimeoutError) as error:
        return [Outcome(unavailable(shard_id, error))] * size
    except Superseded:
        changed = ShardUnavailable(shard_id, "the shard's primary changed; outcome unknown", 0.2)
        return [Outcome(changed)] * size


class Superseded(Exception):
    """The replica called is no longer the shard's primary."""


async def _unless_superseded(
    ref: Any, timeout_seconds: float, superseded: Callable[[], bool]
) -> Any:
    future = asyncio.wrap_future(ref.future())
    deadline = time.monotonic() + timeout_seconds
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            future.cancel()
            raise TimeoutError
        done, _ = await asyncio.wait({future}, timeout=min(remaining, SUPERSEDED_CHECK_SECONDS))
        if done:
            return future.result()
        if superseded():
            future.cancel()
            raise Superseded


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
