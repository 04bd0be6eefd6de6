"""The roles of a replicated shard's engine (`inventory_actors.replication` drives them): a
primary answers each batch once a majority has it and serves reads only under its lease; a
follower refuses commands and takes the batches another replica wrote."""

import asyncio
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Protocol

from inventory_actors.domain import Ledger
from inventory_actors.shard.batch import Entry
from inventory_actors.shard.errors import ServiceError, ShardUnavailable
from inventory_actors.shard.protocol import Outcome
from inventory_actors.shard.recovery import replay_page
from inventory_actors.shard.snapshots import Snapshotter
from persistence import IdempotencyRecord, LogRecord, ShardStore


class BatchShipper(Protocol):
    """Replication of a primary's batches (`inventory_actors.replication`): `ship` starts
    sending a batch to the followers and returns what completes once a majority of the replica
    set has it on disk, or raises if that can no longer happen."""

    def ship(
        self, records: list[LogRecord], idempotency: list[IdempotencyRecord]
    ) -> Awaitable[None]: ...

    async def lease(self) -> None:
        """Return once reads may be served (no other primary can exist), or raise."""

    def lost(self, error: BaseException) -> None:
        """The batch in flight failed: this replica stops being the primary."""


class ReplicaRoles:
    """The part of `ShardCore` that replication uses; the engine's own state is ShardCore's."""

    shard_id: int
    ledger: Ledger
    store: ShardStore | None
    last_lsn: int
    snapshots: Snapshotter
    # Replicated shards only: the follower shipping of each batch, and while this replica is
    # not the primary, the refusal every command and read gets.
    shipper: BatchShipper | None
    refusal: ServiceError | None
    # A follower copying another replica's whole log: nothing else may write meanwhile.
    installing: bool
    # A batch written here but not yet on a majority: reads wait for it (`settled`).
    _in_flight: bool
    _acked: asyncio.Event
    _queue: deque[Entry]
    _wakeup: asyncio.Event
    _log_time_ms: int

    def start(self) -> None:
        raise NotImplementedError

    def halt(self) -> None:
        raise NotImplementedError

    def clock_ms(self) -> int:
        raise NotImplementedError

    def _recover_now(self) -> bool:
        raise NotImplementedError

    def _answer_queued(self, outcome: Outcome) -> None:
        raise NotImplementedError

    async def settled(self) -> None:
        """Return once no batch is waiting for its majority: memory then holds only what is
        acknowledged (a replicated primary), so a read after this sees no other state; and a
        replicated primary holds its read lease (no newer primary can exist)."""
        await self._no_batch_in_flight()
        shipper = self.shipper
        if shipper is not None:
            try:
                await shipper.lease()
            except Exception as error:
                raise ShardUnavailable(self.shard_id, f"no read lease: {error!r}") from None
            # The lease may have been renewed across another batch: wait for it too.
            await self._no_batch_in_flight()

    async def _no_batch_in_flight(self) -> None:
        while self._in_flight:
            await self._acked.wait()

    def turn_away(self, refusal: ServiceError) -> None:
        """Refuse every command from now on, those queued included (none of them ran); the
        batch in flight, if any, still ends with its majority (`drained`)."""
        self.refusal = refusal
        self._answer_queued(Outcome(refusal))

    def resume(self) -> None:
        """Take commands again after a refusal that ended (a switchover that did not happen)."""
        self.refusal = None
        self._wakeup.set()

    async def drained(self) -> None:
        """Return once no batch waits for its majority (after `refusal` was set, nothing new
        starts one)."""
        await self._no_batch_in_flight()

    async def _settle_when_acked(
        self, batch: list[Entry], outcomes: list[Outcome], ack: Awaitable[None]
    ) -> None:
        """Answer a replicated batch once a majority has it. If that fails the outcome is
        unknown (a new primary may or may not adopt it) and this replica steps down."""
        try:
            await ack
        except (asyncio.CancelledError, Exception) as error:
            # A replica that stopped serving while the batch waited (cancelled) or lost its
            # majority: nobody may wait forever, and what happened to the batch is unknown.
            stopped = isinstance(error, asyncio.CancelledError)
            detail = "stopped serving" if stopped else f"replication failed; {error}"
            self._end_in_flight()
            unknown = Outcome(ShardUnavailable(self.shard_id, f"{detail}; outcome unknown"))
            for call, index, _, _ in batch:
                call.settle(index, unknown)
            if stopped:
                raise
            assert self.shipper is not None
            self.shipper.lost(error)
            return
        self._end_in_flight()
        for (call, index, _, _), outcome in zip(batch, outcomes, strict=True):
            call.settle(index, outcome)

    def _end_in_flight(self) -> None:
        self._in_flight = False
        self._acked.set()

    def lead(self, shipper: BatchShipper) -> None:
        """Serve as the primary: every batch is shipped by `shipper` and answered once a
        majority has it. Memory holds exactly the disk, which the seal made the longest log."""
        self.ledger.replaying = False
        self.ledger.rebuild_indexes()
        self.shipper, self.refusal = shipper, None
        self.snapshots.reset(records_since=self.snapshots.records_since, now_ms=self.clock_ms())
        self.start()

    def follow(self, refusal: ServiceError) -> bool:
        """Stop serving (a follower): refuse everything with `refusal`, and rebuild memory from
        disk if this replica was the primary (memory may hold a batch no majority took)."""
        was_leading = self.shipper is not None
        self.refusal, self.shipper = refusal, None
        self.halt()
        self._end_in_flight()
        rebuilt = self._recover_now() if was_leading else True
        self.ledger.replaying = True
        return rebuilt

    def apply_copied(
        self, records: Sequence[LogRecord], idempotency: Sequence[IdempotencyRecord]
    ) -> None:
        """A follower's write: records and idempotency records another replica wrote, durable
        here, then in memory. Raises StorageError, and changes nothing, if the LSNs do not
        follow this log."""
        assert self.store is not None
        self.store.append_copied(records, idempotency)
        if records:
            replay_page(self.ledger, [(r.lsn, r.at_ms, r.events) for r in records])
            self.last_lsn = records[-1].lsn
            self._log_time_ms = max(self._log_time_ms, records[-1].at_ms)
            self.snapshots.records_since += len(records)

    def rebuild(self) -> bool:
        """Rebuild memory from disk (after the disk was filled from another replica)."""
        rebuilt = self._recover_now()
        if self.shipper is None:
            self.ledger.replaying = True
        return rebuilt
