"""The pieces of group commit: one caller's submissions waiting on their batch (`Call`), a
queued command (`Entry`), and the cyclic collector paused while a batch runs."""

import asyncio
import gc
from collections.abc import Iterator
from contextlib import contextmanager

from inventory_actors.shard.protocol import Outcome, Submission


class Call:
    """One caller's submissions: done when the last of them is durable."""

    __slots__ = ("future", "outcomes", "remaining")

    def __init__(self, size: int, future: "asyncio.Future[list[Outcome]]") -> None:
        self.outcomes: list[Outcome | None] = [None] * size
        self.remaining = size
        self.future = future

    def settle(self, index: int, outcome: Outcome) -> None:
        self.outcomes[index] = outcome
        self.remaining -= 1
        if self.remaining == 0 and not self.future.done():
            self.future.set_result(self.outcomes)  # type: ignore[arg-type]


# A queued command: its caller, its place in the call, and its JSON text when it came as one.
Entry = tuple[Call, int, Submission, str | None]


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic collection while a batch runs: a batch allocates thousands of short-lived
    tuples, and each collection they trigger walks the young objects again. Collections resume
    (and catch up) once the batch is answered."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
