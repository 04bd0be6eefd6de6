"""Waiting for the answers of several replicas: each is looked at as it comes, and the wait ends
as soon as enough of them said yes, instead of waiting for the slowest (a lost or frozen
replica may not answer for seconds)."""

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ray.exceptions import RayError

K = TypeVar("K")


async def answer_or_none(ref: Any) -> Any:
    """A replica's answer, or None if its call failed."""
    try:
        return await ref
    except RayError:
        return None


async def until_enough(
    waiting: "dict[asyncio.Future[Any], K]",
    timeout_seconds: float,
    enough: Callable[[K, Any], bool],
) -> bool:
    """Give each answer, as it comes, to `enough` (with its key) until one call says True;
    False if every answer came, or the time ran out, first. `enough` may add futures to
    `waiting` (a retry) or raise. Whatever is still waiting at the end is cancelled."""
    deadline = time.monotonic() + timeout_seconds
    try:
        while waiting:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            done, _ = await asyncio.wait(
                waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for future in done:
                key = waiting.pop(future)
                if enough(key, future.result()):
                    return True
        return False
    finally:
        for future in waiting:
            future.cancel()
