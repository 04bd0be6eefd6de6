"""The engine of one shard, without Ray: a bounded queue, group commit, timers and recovery.

All of it runs on one asyncio loop. A batch is executed in memory and written to the log in one
synchronous step, so no other coroutine (reader, timer, snapshot) can run in between: whenever
anything else runs, memory holds exactly what the disk holds.
"""

import asyncio
import gc
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence

from inventory_actors.domain import (
    Command,
    DomainError,
    ExpireHolds,
    ExpiryResult,
    HoldView,
    InvalidCommand,
    Ledger,
    RestockResult,
    Result,
    SkuView,
    ThresholdView,
)
from inventory_actors.domain.limits import EXPIRE_PER_COMMAND_MAX
from inventory_actors.domain.thresholds import Alert
from inventory_actors.shard.batch import Call, Entry, gc_paused
from inventory_actors.shard.codec import decode_result, encode_command, encode_events, encode_result
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.counters import BatchObserver, ShardCounters, Tally
from inventory_actors.shard.errors import (
    IdempotencyKeyReused,
    Overloaded,
    ServiceError,
    ShardUnavailable,
    StorageFailure,
)
from inventory_actors.shard.fault_hooks import FaultHooks
from inventory_actors.shard.ownership import Ownership
from inventory_actors.shard.partitioning import PartitionMap
from inventory_actors.shard.protocol import (
    Outcome,
    Submission,
    fingerprint_of,
    is_valid_idempotency_key,
)
from inventory_actors.shard.recovery import recover_ledger
from inventory_actors.shard.replica_roles import ReplicaRoles
from inventory_actors.shard.settlement import PeerCall, Settler
from inventory_actors.shard.snapshots import Snapshotter
from inventory_actors.shard.timers import Timers
from persistence import IdempotencyRecord, LogRecord, ShardStore

log = logging.getLogger(__name__)

# How many restock rows cost as much to replay as one ordinary log record.
RESTOCK_ROWS_PER_RECORD = 5


# tuple.__new__ skips the Python-level __new__ of a named tuple, for values built per command.
_new = tuple.__new__

_BAD_KEY = InvalidCommand("idempotency key must be 1 to 255 printable ASCII characters")
_EXPIRE_DUE = Submission(ExpireHolds(EXPIRE_PER_COMMAND_MAX))


def _last_logged_ms(store: ShardStore, last_lsn: int) -> int:
    """The time of the newest record in the log, or of the newest snapshot when the log holds
    nothing after it; 0 for a new shard."""
    tail = store.read_log_events(last_lsn - 1, 1) if last_lsn > 0 else []
    if tail:
        return tail[0][1]
    snapshot = store.latest_snapshot()
    return 0 if snapshot is None else snapshot.at_ms


class ShardCore(ReplicaRoles):
    """Serializes every change of one shard's SKUs and makes it durable before answering."""

    def __init__(
        self,
        shard_id: int,
        open_store: Callable[[], ShardStore],
        clock_ms: Callable[[], int],
        config: ShardConfig,
        peers: PeerCall | None = None,
        faults: FaultHooks | None = None,
        partition: PartitionMap | None = None,
    ) -> None:
        self.shard_id = shard_id
        # Commands for SKUs or reservations of other shards are refused (`ownership`). Without
        # a map (a lone engine, as in tests and benchmarks) the shard takes every command.
        self.ownership = None if partition is None else Ownership(shard_id, partition)
        # Off unless a test injects faults (see `fault_hooks`).
        self.faults = faults or FaultHooks()
        self._late_write: tuple[list[LogRecord], list[IdempotencyRecord]] | None = None
        self.config = config
        self._open_store = open_store
        self._clock_ms = clock_ms
        # The time of the newest record in the log: the business clock never reads less.
        self._log_time_ms = 0
        self._queue: deque[Entry] = deque()
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.counters = ShardCounters()
        self.tally: Tally = Counter()
        self.on_batch: BatchObserver | None = None
        self.store: ShardStore | None = None
        self.ledger = Ledger()
        self.last_lsn = 0
        self.snapshots = Snapshotter(self)
        self.settler = None if peers is None else Settler(self, peers)
        self.timers = Timers(self)
        self.shipper = None
        self.refusal = None
        self._in_flight = False
        self._acked = asyncio.Event()
        self.installing = False
        self._recover_now()

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer and the timers on the running loop."""
        if self._tasks:
            return
        loops = [self._writer_loop, self.timers.expiry_loop, self.timers.housekeeping_loop]
        if self.settler is not None:
            loops.append(self.settler.loop)
        for loop_fn in loops:
            self._tasks.append(asyncio.get_running_loop().create_task(loop_fn()))

    def halt(self) -> None:
        """Stop the writer and the timers (a replica that stops being the primary); the store
        stays open. Whoever is queued is answered with `refusal`."""
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.snapshots.abort()
        refusal = self.refusal or ShardUnavailable(self.shard_id, "shard is not serving")
        self._answer_queued(Outcome(refusal))

    def _answer_queued(self, outcome: Outcome) -> None:
        """Answer every queued command, none of which ran, with `outcome`."""
        while self._queue:
            call, index, _, _ = self._queue.popleft()
            call.settle(index, outcome)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.store is not None:
            self.store.close()
            self.store = None

    @property
    def available(self) -> bool:
        return self.store is not None

    def clock_ms(self) -> int:
        """The shard's business time: its clock, but never before the last time in its log. A
        clock set back (NTP stepping back, a restart on a node whose clock is behind) would make
        what the log already has as overdue, even refused as expired, active again."""
        now_ms = self._clock_ms()
        return now_ms if now_ms > self._log_time_ms else self._log_time_ms

    def _recover_now(self) -> bool:
        """Rebuild memory from disk. On failure the shard stays unavailable and retries."""
        started = time.perf_counter()
        if self.store is not None:
            self.store.close()
            self.store = None
            self._drop_ledger()
        try:
            store = self._open_store()
            ledger, last_lsn, replayed = recover_ledger(
                store, self.config.check_invariants_on_recovery
            )
            logged_ms = _last_logged_ms(store, last_lsn)
        except Exception:
            log.exception("shard %d: recovery failed", self.shard_id)
            return False
        self.store, self.ledger, self.last_lsn = store, ledger, last_lsn
        self._log_time_ms = max(self._log_time_ms, logged_ms)
        # The recovered state lives as long as the shard: move it out of the collector's reach,
        # or every full collection walks millions of objects that never become garbage.
        gc.freeze()
        self.snapshots.reset(records_since=replayed, now_ms=self.clock_ms())
        self.counters.recovery_seconds = time.perf_counter() - started
        log.info(
            "shard %d recovered to lsn %d in %.3f s (%d records replayed)",
            self.shard_id,
            last_lsn,
            self.counters.recovery_seconds,
            replayed,
        )
        return True

    def _drop_ledger(self) -> None:
        """Free the memory of a ledger being rebuilt, before the new one is built. It was frozen
        (out of the collector's reach) and holds reference cycles (its handler tables of bound
        methods): without an unfreeze and a collection it would never be freed."""
        self.ledger = Ledger()
        gc.unfreeze()
        gc.collect()

    # -- commands --------------------------------------------------------------------------

    async def submit(self, submissions: Sequence[Submission]) -> list[Outcome]:
        """Queue commands for the next batch; return once every one is durable or refused."""
        return await self._enqueue(submissions, None)

    async def submit_texts(
        self, submissions: Sequence[Submission], texts: Sequence[str]
    ) -> list[Outcome]:
        """`submit`, with each command's JSON as it arrived (see `wire`): the log stores that
        text instead of encoding the command again."""
        if len(texts) != len(submissions):
            raise ValueError(f"{len(texts)} texts for {len(submissions)} submissions")
        return await self._enqueue(submissions, texts)

    async def _enqueue(
        self, submissions: Sequence[Submission], texts: Sequence[str] | None
    ) -> list[Outcome]:
        if not submissions:
            return []
        if self.refusal is not None:
            return [Outcome(self.refusal)] * len(submissions)
        if not self.available:
            error = ShardUnavailable(self.shard_id, "shard is recovering")
            return [Outcome(error)] * len(submissions)
        if len(self._queue) + len(submissions) > self.config.queue_commands_max:
            self.counters.overloaded += len(submissions)
            full = Overloaded(f"shard {self.shard_id} queue is full")
            return [Outcome(full)] * len(submissions)
        call = Call(len(submissions), asyncio.get_running_loop().create_future())
        append = self._queue.append
        # Refused before the queue: a misrouted command never reaches the ledger or the log.
        misrouted = None if self.ownership is None else self.ownership.refusal
        for index, sub in enumerate(submissions):
            key = sub.idempotency_key
            refusal = None if misrouted is None else misrouted(sub.command)
            if refusal is not None:
                self.counters.misrouted += 1
                call.settle(index, Outcome(refusal))
            elif key is None or is_valid_idempotency_key(key):
                append((call, index, sub, None if texts is None else texts[index]))
            else:
                call.settle(index, Outcome(_BAD_KEY))
        self._wakeup.set()
        return await call.future

    async def _writer_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue and self.available and self.refusal is None:
                size = min(len(self._queue), self.config.batch_commands_max)
                batch = [self._queue.popleft() for _ in range(size)]
                try:
                    await self._write(batch)
                except Exception as error:
                    # A fault outside the batch's own guard must not end the writer, or callers
                    # would wait forever on a shard that says it is available: fail stop, as for
                    # a failed write (answer whoever is still waiting, rebuild from disk).
                    log.exception("shard %d: the writer failed", self.shard_id)
                    waiting = [entry for entry in batch if entry[0].outcomes[entry[1]] is None]
                    self._fail_batch(waiting, error)
                # Let callers that arrived during the write join the queue, and readers run.
                await asyncio.sleep(0)

    async def _write(self, batch: list[Entry]) -> None:
        with gc_paused():
            waiting = self._commit_batch(batch)
        if waiting is not None:
            await waiting
        if self._late_write is not None:
            await self._write_late()
        if self.ledger.unsettled and self.settler is not None:
            self.settler.wake()
        self.snapshots.maybe_start(self.clock_ms())

    async def _write_late(self) -> None:
        """A broken build (see `fault_hooks`): the batch was answered before this write."""
        assert self.store is not None and self._late_write is not None
        records, idempotency = self._late_write
        self._late_write = None
        await asyncio.sleep(self.faults.ack_before_commit_seconds)
        self.store.append(records, idempotency)

    def _commit_batch(self, batch: list[Entry]) -> Awaitable[None] | None:
        """Execute a batch in memory and write it in one transaction, then answer its callers.
        A failure up to the write fails the whole batch and rebuilds memory from disk; once it
        is written, every caller gets its outcome whatever happens next."""
        assert self.store is not None
        now_ms = self.clock_ms()
        records: list[LogRecord] = []
        idempotency: list[IdempotencyRecord] = []
        faults = self.faults
        ack: Awaitable[None] | None = None
        try:
            keys = [s.idempotency_key for _, _, s, _ in batch if s.idempotency_key is not None]
            if faults.skip_idempotency:
                keys = []
            stored = self.store.find_idempotency(keys) if keys else {}
            # What is due expires first, in this transaction: a command refused because its
            # hold or reservation has expired is answered once that expiry is durable.
            lsn = self._expire_due(now_ms, self.last_lsn, records)
            outcomes = []
            for _, _, sub, text in batch:
                outcome, lsn = self._run(sub, text, now_ms, lsn, stored, records, idempotency)
                outcomes.append(outcome)
            started = time.perf_counter()
            if faults.skip_idempotency:
                idempotency = []
            if self.shipper is not None:
                # To the followers first: their writes overlap this one's fsync.
                ack = self.shipper.ship(records, idempotency)
            if faults.ack_before_commit_seconds:
                self._late_write = (records, idempotency)
            else:
                self.store.append(records, idempotency)
            commit_seconds = time.perf_counter() - started
        except Exception as error:
            if ack is not None and self.shipper is not None:
                # Followers may hold what this disk does not: only a new primary can sort it out.
                self._fail_batch(batch, error, rebuild=False)
                self.shipper.lost(error)
                return None
            self._fail_batch(batch, error)
            return None
        self.last_lsn = lsn
        if records:
            self._log_time_ms = now_ms
        self.counters.batches += 1
        self.counters.commands += len(batch)
        self.counters.records += len(records)
        self.snapshots.records_since += len(records)
        try:
            faults.after_commit()
            if self.on_batch is not None:
                self.on_batch(len(batch), commit_seconds)
        except Exception:
            # Memory and disk agree: the batch stands, and its callers are answered below.
            log.exception("shard %d: failed after writing a batch", self.shard_id)
        if ack is not None:
            self._in_flight = True
            self._acked.clear()
            return self._settle_when_acked(batch, outcomes, ack)
        for (call, index, _, _), outcome in zip(batch, outcomes, strict=True):
            call.settle(index, outcome)
        return None

    def _expire_due(self, now_ms: int, lsn: int, records: list[LogRecord]) -> int:
        """Expire, as commands of the batch being written, every hold and reservation due by
        `now_ms` (the timer would within its tick). Returns the batch's last LSN."""
        while (due_ms := self.ledger.next_expiry_ms()) is not None and due_ms <= now_ms:
            outcome, lsn = self._run(_EXPIRE_DUE, None, now_ms, lsn, {}, records, [])
            if not isinstance(outcome.value, ExpiryResult) or not outcome.value.expired:
                break
            self.counters.expired_holds += outcome.value.expired
        return lsn

    def _run(
        self,
        sub: Submission,
        text: str | None,
        now_ms: int,
        lsn: int,
        stored: dict[str, IdempotencyRecord],
        records: list[LogRecord],
        idempotency: list[IdempotencyRecord],
    ) -> tuple[Outcome, int]:
        key = sub.idempotency_key
        fingerprint = ""
        if key is not None:
            fingerprint = sub.fingerprint or fingerprint_of(sub.command)
            prior = stored.get(key)
            if prior is not None:
                if prior.fingerprint != fingerprint or self.faults.refuse_retries:
                    self.tally[type(sub.command), IdempotencyKeyReused.slug] += 1
                    return Outcome(IdempotencyKeyReused(key)), lsn
                self.tally[type(sub.command), "replayed"] += 1
                return Outcome(decode_result(prior.result), True, prior.lsn), lsn
        result: Result | DomainError
        try:
            result, events = self.ledger.execute(sub.command, now_ms)
            self.tally[type(sub.command), "ok"] += 1
        except DomainError as error:
            result, events = error, []
            self.tally[type(sub.command), error.slug] += 1
        record_lsn = None
        if events:
            lsn = record_lsn = lsn + 1
            command_text = encode_command(sub.command) if text is None else text
            records.append(_new(LogRecord, (lsn, now_ms, command_text, encode_events(events))))
            if type(result) is RestockResult:
                # A restock record replays like thousands of others, and snapshots bound replay:
                # they count it as the records it costs (a row replays in about a fifth of a
                # record's time: bench/restock.py prints both).
                self.snapshots.records_since += result.applied // RESTOCK_ROWS_PER_RECORD
        if key is not None:
            record = IdempotencyRecord(key, fingerprint, record_lsn, encode_result(result), now_ms)
            idempotency.append(record)
            stored[key] = record
        return _new(Outcome, (result, False, record_lsn)), lsn

    def _fail_batch(self, batch: list[Entry], error: Exception, rebuild: bool = True) -> None:
        log.error("shard %d: batch of %d failed: %r", self.shard_id, len(batch), error)
        self.counters.storage_failures += 1
        failure = Outcome(StorageFailure(self.shard_id, f"write failed: {error}"))
        for call, index, _, _ in batch:
            call.settle(index, failure)
        self.snapshots.abort()
        if rebuild and not self._recover_now():
            # Nobody waits on a shard that cannot open its file: answer the queue at once.
            self._answer_queued(Outcome(ShardUnavailable(self.shard_id, "shard is recovering")))
            self._tasks.append(asyncio.get_running_loop().create_task(self._recovery_loop()))

    async def _recovery_loop(self) -> None:
        while not self._recover_now():
            await asyncio.sleep(self.config.recovery_retry_seconds)
        self._wakeup.set()

    async def run_command(self, command: Command) -> Outcome:
        outcomes = await self.submit([Submission(command)])
        return outcomes[0]

    # -- timers (`timers.py`) ----------------------------------------------------------------

    async def housekeep(self) -> None:
        """Forget idempotency records and finished holds older than their retention."""
        await self.timers.housekeep()

    # -- reads -----------------------------------------------------------------------------

    def require_store(self) -> None:
        """Raise unless the file is open (a follower serves other replicas from it)."""
        if self.store is None:
            raise ShardUnavailable(self.shard_id, "shard is recovering")

    @property
    def log_time_ms(self) -> int:
        """The time of the newest record in the log (or the snapshot's, if none since)."""
        return self._log_time_ms

    def require_available(self) -> None:
        if self.refusal is not None:
            raise self.refusal
        if not self.available:
            raise ShardUnavailable(self.shard_id, "shard is recovering")

    def read_skus(self, skus: Sequence[str]) -> list[SkuView | None]:
        self.require_available()
        return [self.ledger.sku_view(sku) for sku in skus]

    def read_hold(self, hold_id: str) -> HoldView | None:
        self.require_available()
        return self.ledger.hold_view(hold_id, self.clock_ms())

    def read_alerts(self) -> list[Alert]:
        """The SKU-locations that are low now: (sku, location, available, low_stock_below)."""
        self.require_available()
        return self.ledger.alerts()

    def read_threshold(self, sku: str, location: str) -> ThresholdView:
        self.require_available()
        return self.ledger.threshold_view(sku, location)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)


__all__ = ["ServiceError", "ShardCore"]
