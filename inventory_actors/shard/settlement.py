"""A home shard telling the other shards of its reservations what it decided
(docs/reservations.md): in rounds, one call per shard per round, until each has applied it."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from inventory_actors.domain import DomainError, Ledger, MarkSettled, SettleHold
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.counters import ShardCounters
from inventory_actors.shard.errors import ServiceError, ShardUnavailable
from inventory_actors.shard.protocol import Outcome, Submission

log = logging.getLogger(__name__)

# Calls another shard of the same data directory.
PeerCall = Callable[[int, Sequence[Submission]], Awaitable[list[Outcome]]]


class HomeShard(Protocol):
    """What the settler uses of the shard it runs in (`ShardCore`): its decisions not yet
    applied everywhere (`ledger.unsettled`, read anew each round: recovery replaces the
    ledger), its own queue for the MarkSettled commands, and its counters."""

    @property
    def shard_id(self) -> int: ...

    @property
    def config(self) -> ShardConfig: ...

    @property
    def available(self) -> bool: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def counters(self) -> ShardCounters: ...

    async def submit(self, submissions: Sequence[Submission]) -> list[Outcome]: ...


async def wait_at_most(event: asyncio.Event, timeout_seconds: float) -> None:
    """Wait for `event` or the timeout. Not `asyncio.wait_for`: on Python 3.11 it can swallow
    a cancellation that arrives as the event fires, and the loop would never stop."""
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=timeout_seconds)
    finally:
        waiter.cancel()


class Settler:
    def __init__(self, home: HomeShard, peers: PeerCall) -> None:
        self._home = home
        self._peers = peers
        self._wakeup = asyncio.Event()
        # Remote shards that failed to take a decision, and when to try them again: monotonic
        # seconds, not the shard's clock, which moves with the business time (a clock set back
        # would otherwise hold the retries back as long).
        self._retry_at_seconds: dict[int, float] = {}

    def wake(self) -> None:
        """A batch recorded decisions: settle soon."""
        self._wakeup.set()

    async def loop(self) -> None:
        """After every batch with news (gathering `settle_gather_seconds` of them), and again
        every `settle_retry_seconds` while some shard is unreachable (also after recovery)."""
        home = self._home
        while True:
            await wait_at_most(self._wakeup, home.config.settle_retry_seconds)
            await asyncio.sleep(home.config.settle_gather_seconds)
            self._wakeup.clear()
            if home.available and home.ledger.unsettled:
                try:
                    await self.settle_once()
                except Exception:
                    log.exception("shard %d: settling failed", home.shard_id)

    async def settle_once(self) -> int:
        """One round: every unsettled decision to its remote shards, one call per shard, then
        one MarkSettled per applied decision. Returns how many were applied."""
        home = self._home
        now_seconds = time.monotonic()
        per_shard: dict[int, list[SettleHold]] = {}
        for rid, reservation in list(home.ledger.unsettled.items()):
            for shard in reservation.unsettled:
                if self._retry_at_seconds.get(shard, 0.0) > now_seconds:
                    continue
                batch = per_shard.setdefault(shard, [])
                if len(batch) < home.config.settle_per_call_max:
                    batch.append(SettleHold(rid, reservation.status.value))
        shards = list(per_shard)
        answers = await asyncio.gather(
            *(self._peers(shard, [Submission(c) for c in per_shard[shard]]) for shard in shards),
            return_exceptions=True,
        )
        marks: list[Submission] = []
        for shard, answer in zip(shards, answers, strict=True):
            marks += self._settled_marks(shard, per_shard[shard], answer, now_seconds)
        if marks:
            outcomes = await home.submit(marks)
            home.counters.settled += sum(1 for outcome in outcomes if outcome.ok)
        return len(marks)

    def _settled_marks(
        self,
        shard: int,
        commands: list[SettleHold],
        answer: list[Outcome] | BaseException,
        now_seconds: float,
    ) -> list[Submission]:
        home = self._home
        if isinstance(answer, BaseException):
            answer = [Outcome(ShardUnavailable(shard, repr(answer)))] * len(commands)
        marks = []
        for command, outcome in zip(commands, answer, strict=True):
            if isinstance(outcome.value, ServiceError):
                # Unreachable or busy: try again later; the decision stands meanwhile.
                if shard not in self._retry_at_seconds:  # say so once per outage
                    log.warning(
                        "shard %d: shard %d cannot take decisions yet: %r",
                        home.shard_id,
                        shard,
                        outcome.value,
                    )
                home.counters.settle_failures += 1
                self._retry_at_seconds[shard] = now_seconds + home.config.settle_retry_seconds
                continue
            if isinstance(outcome.value, DomainError):
                # Cannot happen while the protocol holds; stop retrying (a refusal does not heal)
                # and say so loudly, in the log and in a metric with its own alert.
                home.counters.settle_refusals += 1
                log.error(
                    "shard %d: shard %d refused decision %r: %r",
                    home.shard_id,
                    shard,
                    command,
                    outcome.value,
                )
            self._retry_at_seconds.pop(shard, None)
            marks.append(Submission(MarkSettled(command.reservation_id, shard)))
        return marks
