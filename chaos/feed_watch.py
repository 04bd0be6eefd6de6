"""The change feed under a short retention (`--feed-retention`): a follower reads the feed from
its start through the load, keeping every event before the shards prune it (the checker's
whole feed), and hands out its cursors; a reader reads a page from a cursor taken a while ago,
which must continue exactly where the follower was then, or be refused 410 `cursor-expired`."""

import asyncio
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chaos.history import problem_type
from chaos.state_checks import identity
from chaos.workload import send

PAGE = 1_000
OLD_CURSOR_PAGE = 300
IDLE_SECONDS = 0.2
CURSOR_EVERY_SECONDS = 2.0


@dataclass
class FeedWatch:
    now: Callable[[], float]
    rng: random.Random
    retention_seconds: float
    events: list[dict[str, Any]] = field(default_factory=list)
    cursor: str | None = None
    # Events read so far per shard, and the cursors handed out: (when, cursor, those counts).
    counts: Counter[int] = field(default_factory=Counter)
    taken: list[tuple[float, str, dict[int, int]]] = field(default_factory=list)
    reads: list[dict[str, Any]] = field(default_factory=list)
    # What stopped the follower, if anything did: the feed it kept is then not whole.
    broken: str | None = None

    async def follow(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        last_taken = -CURSOR_EVERY_SECONDS
        while not stop.is_set() and self.broken is None:
            got = await self.page(session)
            if got and self.cursor and self.now() - last_taken >= CURSOR_EVERY_SECONDS:
                self.taken.append((self.now(), self.cursor, dict(self.counts)))
                last_taken = self.now()
            if not got:
                await asyncio.sleep(IDLE_SECONDS)

    async def page(self, session: aiohttp.ClientSession) -> int:
        """Read the follower's next page: how many events it had (0 also when refused)."""
        query = f"?limit={PAGE}" + (f"&cursor={self.cursor}" if self.cursor else "")
        status, answer, _ = await send(session, "GET", f"/v1/events{query}", None, None)
        if status == 200:
            self.events.extend(answer["events"])
            self.counts.update(event["shard"] for event in answer["events"])
            self.cursor = answer["cursor"]
            return len(answer["events"])
        if 400 <= status < 500:
            self.broken = f"the follower's own cursor was refused: {status} {answer}"
        return 0

    async def read_old(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        """Now and then, a page from a cursor taken up to twice the retention ago."""
        while not stop.is_set():
            await asyncio.sleep(self.rng.uniform(0.5, 3.0))
            recent = [t for t in self.taken if self.now() - t[0] <= 2 * self.retention_seconds]
            if not recent:
                continue
            taken_at, cursor, counts = self.rng.choice(recent)
            query = f"?limit={OLD_CURSOR_PAGE}&cursor={cursor}"
            status, answer, _ = await send(session, "GET", f"/v1/events{query}", None, None)
            got = answer.get("events", []) if status == 200 and isinstance(answer, dict) else []
            self.reads.append(
                {
                    "taken_at": taken_at,
                    "read_at": self.now(),
                    "counts": counts,
                    "status": status,
                    "problem": problem_type(answer),
                    "events": [identity(event) for event in got],
                }
            )
