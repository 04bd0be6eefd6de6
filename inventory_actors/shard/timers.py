"""A shard's two timers: expiring holds once they are due, and housekeeping, which forgets what
retention allows (idempotency records, log records, finished holds). Holds expire and are
forgotten through commands in the shard's own queue, like every change of its state."""

import asyncio
import logging
from collections.abc import Callable
from typing import Protocol

from inventory_actors.domain import (
    Command,
    ExpireHolds,
    ExpiryResult,
    Ledger,
    PruneHolds,
    PruneResult,
)
from inventory_actors.domain.limits import EXPIRE_PER_COMMAND_MAX, PRUNE_PER_COMMAND_MAX
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.counters import ShardCounters
from inventory_actors.shard.protocol import Outcome
from persistence import ShardStore

log = logging.getLogger(__name__)

# Log records forgotten per housekeeping pass at most: one short transaction.
LOG_PRUNE_PER_PASS = 100_000


class TimedShard(Protocol):
    """What the timers use of their shard (`ShardCore`), read anew each time: recovery replaces
    the store and the ledger."""

    @property
    def shard_id(self) -> int: ...

    @property
    def config(self) -> ShardConfig: ...

    @property
    def clock_ms(self) -> Callable[[], int]: ...

    @property
    def available(self) -> bool: ...

    @property
    def store(self) -> ShardStore | None: ...

    @property
    def ledger(self) -> Ledger: ...

    @property
    def counters(self) -> ShardCounters: ...

    async def run_command(self, command: Command) -> Outcome: ...


class Timers:
    def __init__(self, shard: TimedShard) -> None:
        self._shard = shard

    async def expiry_loop(self) -> None:
        shard = self._shard
        while True:
            await asyncio.sleep(shard.config.expiry_interval_seconds)
            due_ms = shard.ledger.next_expiry_ms() if shard.available else None
            if due_ms is not None and due_ms <= shard.clock_ms():
                outcome = await shard.run_command(ExpireHolds(EXPIRE_PER_COMMAND_MAX))
                if isinstance(outcome.value, ExpiryResult):
                    shard.counters.expired_holds += outcome.value.expired
                if not outcome.ok:
                    log.warning("shard %d: expiry failed: %r", shard.shard_id, outcome.value)

    async def housekeeping_loop(self) -> None:
        shard = self._shard
        while True:
            await asyncio.sleep(shard.config.housekeeping_interval_seconds)
            if shard.available:
                try:
                    await self.housekeep()
                except Exception:
                    log.exception("shard %d: housekeeping failed", shard.shard_id)

    async def housekeep(self) -> None:
        """Forget idempotency records and finished holds older than their retention."""
        shard, config = self._shard, self._shard.config
        now_ms = shard.clock_ms()
        self.prune_storage()
        retention_cutoff_ms = now_ms - int(config.hold_retention_seconds * 1000)
        while (
            await self._prune(retention_cutoff_ms, PRUNE_PER_COMMAND_MAX) == PRUNE_PER_COMMAND_MAX
        ):
            pass
        # Then the oldest beyond the count cap, exactly: the ledger prunes in finish order.
        finished = shard.ledger.finished
        while len(finished) > config.finished_holds_max:
            excess = min(len(finished) - config.finished_holds_max, PRUNE_PER_COMMAND_MAX)
            if await self._prune(finished[excess - 1][0] + 1, excess) == 0:
                break

    def prune_storage(self) -> None:
        """Forget idempotency and log records past their retention: what a follower does of
        housekeeping (holds are forgotten by the primary's commands, shipped to it)."""
        shard = self._shard
        store = shard.store
        assert store is not None
        now_ms = shard.clock_ms()
        idem_before_ms = now_ms - int(shard.config.idempotency_retention_seconds * 1000)
        store.prune_idempotency(idem_before_ms, PRUNE_PER_COMMAND_MAX)
        self._prune_log(store, now_ms)

    def _prune_log(self, store: ShardStore, now_ms: int) -> None:
        """Forget log records older than the event retention, but never one that recovery
        still needs (after the newest snapshot's start)."""
        snapshot = store.latest_snapshot()
        if snapshot is None:
            return
        before_ms = now_ms - int(self._shard.config.event_retention_seconds * 1000)
        store.prune_log(snapshot.start_lsn, before_ms, LOG_PRUNE_PER_PASS)

    async def _prune(self, finished_before_ms: int, limit: int) -> int:
        outcome = await self._shard.run_command(PruneHolds(finished_before_ms, limit))
        return outcome.value.pruned if isinstance(outcome.value, PruneResult) else 0
