"""Coalescing: concurrent requests for the same shard inside one replica travel in one actor
call. Per shard at most `calls_in_flight_max` calls are outstanding; a command arriving while
all are busy leaves with the next call, with everything else that arrived meanwhile, and under
light load a command leaves at once. Why, with what an actor call costs: docs/http.md,
"Coalescing"."""

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from inventory_actors.observability.request_context import request_id
from inventory_actors.shard.errors import Overloaded
from inventory_actors.shard.protocol import Outcome, Submission

# (shard id, submissions, the request id of each submission) -> outcomes.
ShardCall = Callable[[int, Sequence[Submission], Sequence[str]], Awaitable[list[Outcome]]]
# A waiting command: its submission, its request's id ("" when none) and its answer to be.
_Pending = tuple[Submission, str, "asyncio.Future[Outcome]"]


@dataclass
class CoalescerStats:
    calls: int = 0
    commands: int = 0
    refused: int = 0


@dataclass
class _Shard:
    pending: list[_Pending] = field(default_factory=list)
    in_flight: int = 0


class Coalescer:
    def __init__(
        self,
        call_shard: ShardCall,
        *,
        calls_in_flight_max: int = 2,
        commands_per_call_max: int = 1_000,
        pending_max: int = 20_000,
    ) -> None:
        assert calls_in_flight_max >= 1 and commands_per_call_max >= 1 and pending_max >= 1
        self._call_shard = call_shard
        self._calls_in_flight_max = calls_in_flight_max
        self._commands_per_call_max = commands_per_call_max
        self._pending_max = pending_max
        self._shards: dict[int, _Shard] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.stats = CoalescerStats()

    def pending_count(self, shard_id: int) -> int:
        shard = self._shards.get(shard_id)
        return 0 if shard is None else len(shard.pending)

    async def submit(self, shard_id: int, submissions: Sequence[Submission]) -> list[Outcome]:
        """Send `submissions` (all owned by `shard_id`) with whatever else is going there."""
        shard = self._shards.setdefault(shard_id, _Shard())
        if len(shard.pending) + len(submissions) > self._pending_max:
            self.stats.refused += len(submissions)
            full = Overloaded(f"too many requests waiting for shard {shard_id} in this replica")
            return [Outcome(full)] * len(submissions)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in submissions]
        rid = request_id.get() or ""
        shard.pending.extend(
            (sub, rid, future) for sub, future in zip(submissions, futures, strict=True)
        )
        self._dispatch(shard_id, shard)
        # Each call is bounded by the client's call timeout, so these futures always settle.
        if len(futures) == 1:  # a single request: await it without gather's wrapper future
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    def _dispatch(self, shard_id: int, shard: _Shard) -> None:
        while shard.pending and shard.in_flight < self._calls_in_flight_max:
            batch = shard.pending[: self._commands_per_call_max]
            del shard.pending[: self._commands_per_call_max]
            shard.in_flight += 1
            task = asyncio.get_running_loop().create_task(self._call(shard_id, shard, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _call(
        self,
        shard_id: int,
        shard: _Shard,
        batch: list[_Pending],
    ) -> None:
        self.stats.calls += 1
        self.stats.commands += len(batch)
        try:
            submissions = [sub for sub, _, _ in batch]
            outcomes = await self._call_shard(shard_id, submissions, [rid for _, rid, _ in batch])
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if not future.done():
                    future.set_result(outcome)
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        except Exception as error:
            # The call itself failed (not a command): every waiter hears why.
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
        finally:
            shard.in_flight -= 1
            self._dispatch(shard_id, shard)
