"""The coalescer in isolation, with a recording stand-in for the shard call (pure code)."""

import asyncio
from collections.abc import Callable, Sequence

import pytest

from inventory_actors.domain import ExpireHolds, ExpiryResult
from inventory_actors.observability.request_context import request_id
from inventory_actors.shard.errors import Overloaded
from inventory_actors.shard.protocol import Outcome, Submission
from serve_app.coalescer import Coalescer


class RecordingShards:
    """Answers every command with its own index in the call; holds calls until released."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.request_ids: list[list[str]] = []
        self.gate = asyncio.Event()
        self.fail_with: Exception | None = None

    async def call(
        self, shard_id: int, subs: Sequence[Submission], request_ids: Sequence[str]
    ) -> list[Outcome]:
        assert len(request_ids) == len(subs)
        self.calls.append((shard_id, len(subs)))
        self.request_ids.append(list(request_ids))
        await self.gate.wait()
        if self.fail_with is not None:
            raise self.fail_with
        return [Outcome(ExpiryResult(sub.command.limit)) for sub in subs]  # type: ignore[union-attr]


def sub(n: int) -> Submission:
    return Submission(ExpireHolds(n))


async def until(condition: "Callable[[], bool]") -> None:
    """Let other tasks run until `condition` holds (bounded, no wall-clock waits)."""
    for _ in range(1_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def settle(tasks: list["asyncio.Task[list[Outcome]]"]) -> list[list[Outcome]]:
    return list(await asyncio.wait_for(asyncio.gather(*tasks), 5))


def test_waiting_commands_leave_together_in_one_call() -> None:
    async def scenario() -> None:
        shards = RecordingShards()
        coalescer = Coalescer(shards.call, calls_in_flight_max=1)
        tasks = [asyncio.create_task(coalescer.submit(0, [sub(i)])) for i in range(50)]
        await until(lambda: len(shards.calls) == 1)
        shards.gate.set()
        answers = await settle(tasks)
        # Every caller gets its own answer, in spite of sharing calls.
        assert [a[0].value for a in answers] == [ExpiryResult(i) for i in range(50)]
        # The first call left alone; the other 49 waited and left together.
        assert shards.calls == [(0, 1), (0, 49)]
        assert coalescer.stats.calls == 2 and coalescer.stats.commands == 50

    asyncio.run(scenario())


def test_calls_are_bounded_per_shard_and_by_size() -> None:
    async def scenario() -> None:
        shards = RecordingShards()
        coalescer = Coalescer(shards.call, calls_in_flight_max=2, commands_per_call_max=10)
        tasks = [asyncio.create_task(coalescer.submit(i % 2, [sub(i)])) for i in range(60)]
        await until(lambda: len(shards.calls) == 4)
        for _ in range(10):
            await asyncio.sleep(0)
        # Two calls per shard at most while none has answered.
        assert sorted(shards.calls) == [(0, 1), (0, 1), (1, 1), (1, 1)]
        shards.gate.set()
        await settle(tasks)
        assert all(size <= 10 for _, size in shards.calls)
        assert sum(size for _, size in shards.calls) == 60

    asyncio.run(scenario())


def test_a_full_pending_list_refuses_at_once() -> None:
    async def scenario() -> None:
        shards = RecordingShards()
        coalescer = Coalescer(shards.call, calls_in_flight_max=1, pending_max=5)
        first = asyncio.create_task(coalescer.submit(0, [sub(0)]))
        await until(lambda: len(shards.calls) == 1)
        waiting = asyncio.create_task(coalescer.submit(0, [sub(i) for i in range(5)]))
        await until(lambda: coalescer.pending_count(0) == 5)
        refused = await coalescer.submit(0, [sub(9)])
        assert isinstance(refused[0].value, Overloaded)
        assert coalescer.stats.refused == 1
        shards.gate.set()
        await settle([first, waiting])

    asyncio.run(scenario())


def test_a_failed_call_fails_its_callers_and_not_the_next_call() -> None:
    async def scenario() -> None:
        shards = RecordingShards()
        shards.fail_with = RuntimeError("boom")
        coalescer = Coalescer(shards.call, calls_in_flight_max=1)
        task = asyncio.create_task(coalescer.submit(0, [sub(1), sub(2)]))
        await until(lambda: len(shards.calls) == 1)
        shards.gate.set()
        with pytest.raises(RuntimeError, match="boom"):
            await asyncio.wait_for(task, 5)
        shards.fail_with = None
        answer = await asyncio.wait_for(coalescer.submit(0, [sub(3)]), 5)
        assert answer[0].value == ExpiryResult(3)

    asyncio.run(scenario())


def test_each_command_travels_with_its_requests_id() -> None:
    async def scenario() -> None:
        shards = RecordingShards()
        coalescer = Coalescer(shards.call, calls_in_flight_max=1)

        async def from_request(rid: str | None, n: int) -> list[Outcome]:
            request_id.set(rid)  # each task runs in a copy of the context
            return await coalescer.submit(0, [sub(n)] * n)

        first = asyncio.create_task(from_request("first", 1))
        await until(lambda: len(shards.calls) == 1)
        later = [
            asyncio.create_task(from_request("second", 2)),
            asyncio.create_task(from_request(None, 1)),
        ]
        await until(lambda: coalescer.pending_count(0) == 3)
        shards.gate.set()
        await settle([first, *later])
        assert shards.request_ids == [["first"], ["second", "second", ""]]

    asyncio.run(scenario())
