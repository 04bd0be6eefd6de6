"""Calls to the primaries of replicated shards: a call to a primary that etcd replaces while it
waits is answered 503 (outcome unknown) at once, and one refused with NotPrimary, which ran
nowhere, is sent again to the primary etcd names next, for a few seconds (a switchover or a
failover in progress)."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from inventory_actors.cluster.calls import await_outcomes, await_read
from inventory_actors.cluster.replica_sets import PrimaryHandles
from inventory_actors.shard.errors import NotPrimary, ShardUnavailable
from inventory_actors.shard.protocol import Outcome

# How long a refused call is sent again, and how often.
NOT_PRIMARY_RETRY_SECONDS = 3.0
NOT_PRIMARY_PAUSE_SECONDS = 0.05


async def call_primary(
    shards: PrimaryHandles,
    shard_id: int,
    size: int,
    send: Callable[[Any], Any],
    timeout_seconds: float,
) -> list[Outcome]:
    """The outcomes of `send(handle)` (an `execute` of `size` commands) at the primary."""
    deadline = time.monotonic() + NOT_PRIMARY_RETRY_SECONDS
    while True:
        replaced = shards.directory.replaced(shard_id)
        try:
            handle = shards[shard_id]
        except ShardUnavailable as error:
            return [Outcome(error)] * size
        outcomes = await await_outcomes(shard_id, size, send(handle), timeout_seconds, replaced)
        refused = all(isinstance(outcome.value, NotPrimary) for outcome in outcomes)
        if not refused or time.monotonic() > deadline:
            return outcomes
        await _next_primary(shards)


async def read_primary(
    shards: PrimaryHandles, shard_id: int, send: Callable[[Any], Any], timeout_seconds: float
) -> Any:
    """The answer of `send(handle)` (a read) at the primary."""
    deadline = time.monotonic() + NOT_PRIMARY_RETRY_SECONDS
    while True:
        try:
            return await await_read(shard_id, send(shards[shard_id]), timeout_seconds)
        except NotPrimary:
            if time.monotonic() > deadline:
                raise
        await _next_primary(shards)


async def _next_primary(shards: PrimaryHandles) -> None:
    await asyncio.sleep(NOT_PRIMARY_PAUSE_SECONDS)
    await asyncio.to_thread(shards.directory.refresh)
