"""The shard actor: a thin Ray shell around ShardCore. One per SKU group, named
`inventory-shard-<i>` in its namespace, detached, restarted forever, never retried."""

import asyncio
import gc
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray

from inventory_actors.cluster.calls import await_outcomes
from inventory_actors.cluster.replica_endpoints import ReplicaEndpoints
from inventory_actors.cluster.shard_metrics import ShardMetrics
from inventory_actors.cluster.wire import (
    decode_submission_texts,
    encode_outcomes,
    encode_submissions,
)
from inventory_actors.domain import HoldView, InvalidCommand, SkuView, ThresholdView
from inventory_actors.domain.thresholds import Alert
from inventory_actors.observability import json_logging
from inventory_actors.replication.agent import ReplicaAgent
from inventory_actors.replication.config import ReplicationConfig
from inventory_actors.replication.directory import PEER_REFRESH_SECONDS, PrimaryDirectory
from inventory_actors.shard.call_log import log_call
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.fault_hooks import Fault, FaultHooks
from inventory_actors.shard.feed_pages import Position, ShardEvents, shard_events
from inventory_actors.shard.partitioning import PartitionMap
from inventory_actors.shard.protocol import Outcome, ShardStatus, Submission
from inventory_actors.shard.restock_chunk import RestockChunk
from persistence import SqliteShardStore
from persistence.exports import stock_table
from persistence.port import within_bytes

ACTOR_NAME_PREFIX = "inventory-shard-"
DEFAULT_NAMESPACE = "inventory"
# A page of the log read by an export: at most this many records, and about this many bytes
# (one restock record may hold 100,000 rows).
LOG_PAGE_RECORDS_MAX = 10_000
LOG_PAGE_BYTES_MAX = 16 * 1024 * 1024
# A home shard waits this long for another shard to take a decision, then retries later.
PEER_CALL_TIMEOUT_SECONDS = 10.0


# Young collections every 50,000 net allocations instead of 700; the older generations as usual.
_GC_THRESHOLDS = (50_000, 10, 10)


def shard_name(shard_id: int) -> str:
    return f"{ACTOR_NAME_PREFIX}{shard_id}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _kill_own_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@ray.remote(  # type: ignore[call-overload]
    # Shards are mostly waiting on fsync; a quarter CPU each lets several share a small node.
    num_cpus=0.25,
    # A crashed shard is restarted and recovers from its file; callers see 503 meanwhile.
    max_restarts=-1,
    # Mutations are never retried by Ray: a retry could apply twice. Callers retry with keys.
    max_task_retries=0,
    # Calls waiting inside the actor; the shard's own queue bounds commands further.
    max_concurrency=1000,
)
class ShardActor(ReplicaEndpoints):
    def __init__(
        self,
        shard_id: int,
        path: str,
        config: ShardConfig,
        namespace: str,
        partition: PartitionMap | None = None,
        replica: tuple[str, ReplicationConfig] | None = None,
    ) -> None:
        """`partition` is the data directory's map, which the shard checks every command
        against (`shard.ownership`). The map is fixed when the directory is created, so a
        restarted actor, which gets the same arguments, still has the right one. `replica`
        (name, config) makes this actor one replica of a replicated shard."""
        json_logging.configure("shard")
        # The process is this shard's alone. A call decodes a thousand commands into objects
        # that live until it is answered; with the default threshold (700) each call would run
        # several young collections and promote all of them to older generations.
        gc.set_threshold(*_GC_THRESHOLDS)
        self._path = path
        self._config = config
        self._store: SqliteShardStore | None = None
        # The namespace the shards were created in, which need not be this job's own.
        self._namespace = namespace
        self._peer_handles: dict[int, Any] = {}
        self._faults = FaultHooks(crash=_kill_own_process)
        self._core = ShardCore(
            shard_id,
            self._open_store,
            self._clock_ms,
            config,
            self._call_peer,
            self._faults,
            partition,
        )
        # Ray runs an async actor's __init__ on its event loop, so the timers start here and
        # holds expire after a restart even if no request ever arrives. A replica starts as a
        # follower; its agent starts them when it becomes the primary.
        self._agent: ReplicaAgent | None = None
        self._directory: PrimaryDirectory | None = None
        if replica is None:
            self._core.start()
        else:
            name, replication = replica
            self._replication = replication
            self._agent = ReplicaAgent(self._core, name, replication, self._replica_handle)
            self._core.ledger.replaying = True
            self._agent.start()
        self._metrics = ShardMetrics(shard_id)
        self._metrics_task = asyncio.get_running_loop().create_task(self._metrics.run(self._core))

    def _clock_ms(self) -> int:
        frozen = self._faults.frozen_clock_ms
        return _now_ms() + self._faults.clock_offset_ms if frozen is None else frozen

    def _open_store(self) -> SqliteShardStore:
        self._store = SqliteShardStore(Path(self._path))
        return self._store

    def _replica_handle(self, name: str) -> Any:
        return ray.get_actor(name, namespace=self._namespace)

    async def _call_peer(self, shard_id: int, submissions: Sequence[Submission]) -> list[Outcome]:
        """Another shard of the same data directory, found by name (its actor may have been
        restarted since: the name stays), or its primary's replica for a replicated shard."""
        if self._agent is not None:
            if self._directory is None:
                self._directory = PrimaryDirectory(
                    self._replication, self._namespace, PEER_REFRESH_SECONDS
                )
            directory = self._directory
            replaced = directory.replaced(shard_id)
            handle = directory.handle(shard_id)
            if handle is None:
                no_primary = ShardUnavailable(shard_id, "the shard has no primary yet")
                return [Outcome(no_primary)] * len(submissions)
            ref = handle.execute.remote(encode_submissions(submissions))
            return await await_outcomes(
                shard_id,
                len(submissions),
                ref,
                PEER_CALL_TIMEOUT_SECONDS,
                replaced,
            )
        handle = self._peer_handles.get(shard_id)
        if handle is None:
            handle = ray.get_actor(shard_name(shard_id), namespace=self._namespace)
            self._peer_handles[shard_id] = handle
        ref = handle.execute.remote(encode_submissions(submissions))
        return await await_outcomes(shard_id, len(submissions), ref, PEER_CALL_TIMEOUT_SECONDS)

    @ray.method(num_returns=1, max_task_retries=0, retry_exceptions=False)
    async def execute(self, payload: str, request_ids: Sequence[str] = ()) -> str:
        """Run encoded submissions (see `wire`); answer their encoded outcomes, in order.
        `request_ids`, when given, names the HTTP request of each submission, for the logs."""
        try:
            submissions, texts = decode_submission_texts(payload)
        except (ValueError, KeyError, TypeError, IndexError) as error:
            raise ValueError(f"undecodable submissions: {error}") from None
        outcomes = await self._core.submit_texts(submissions, texts)
        log_call(self._core.shard_id, submissions, outcomes, request_ids)
        return encode_outcomes(outcomes)

    @ray.method(num_returns=1, max_task_retries=0, retry_exceptions=False)
    async def restock(self, chunk: RestockChunk) -> Outcome:
        """Apply one chunk of a restock job as one durable command (see `restock_rows`)."""
        try:
            submission, log_text = chunk.submission()
        except ValueError as error:
            return Outcome(InvalidCommand(str(error)))
        return (await self._core.submit_texts([submission], [log_text]))[0]

    async def export_levels(self) -> pa.Table:
        """Every SKU-location with its SKU's version and this shard's LSN. Built in one step of
        the actor's loop, with no await, so no command lands midway: the table is the state at
        that LSN. A million levels hold the shard for about a second."""
        core = self._core
        await core.settled()
        core.require_available()
        ledger = core.ledger
        columns, _ = ledger.export_sku_columns(list(ledger.skus), 0, ledger.level_count + 1)
        return stock_table(core.shard_id, core.last_lsn, columns)

    async def read_log(
        self, after_lsn: int, limit: int, byte_limit: int = LOG_PAGE_BYTES_MAX
    ) -> list[tuple[int, int, str]]:
        """(lsn, at_ms, events JSON) of the log records after `after_lsn`: at most `limit`
        records (capped at 10,000) and about `byte_limit` bytes, but at least one."""
        return (await self.read_feed(after_lsn, limit, byte_limit))[1]

    async def read_feed(
        self, after_lsn: int, limit: int, byte_limit: int = LOG_PAGE_BYTES_MAX
    ) -> tuple[int, list[tuple[int, int, str]]]:
        """`read_log`, with the oldest LSN the log still holds (older ones were pruned)."""
        core = self._core
        await core.settled()
        core.require_available()
        assert core.store is not None
        limit = max(1, min(limit, LOG_PAGE_RECORDS_MAX))
        records = core.store.read_log_page(after_lsn, limit, byte_limit)
        return core.store.first_lsn(), records

    async def feed_page(
        self, start: Position, limit: int, byte_limit: int
    ) -> tuple[int, ShardEvents]:
        """The change feed's next events of this shard from `start`, at most `limit`, turned
        into encoded events here, where the log is (shards do this in parallel); with the
        oldest LSN the log still holds."""
        first_lsn, records = await self.read_feed(max(start.lsn - 1, 0), limit, byte_limit)
        return first_lsn, shard_events(self._core.shard_id, start, records, limit)

    async def read_history(
        self, needle: str, until_ms: int, before_lsn: int, limit: int
    ) -> tuple[int, int | None, list[tuple[int, int, str]]]:
        """Records whose events mention `needle` (a SKU as JSON text), newest first, at or
        before `until_ms` and below `before_lsn`; with the oldest LSN the log holds and the
        time from which it holds every change: that record's time, or if the log was pruned
        whole, the newest snapshot's (None if the log never had a record)."""
        core = self._core
        await core.settled()
        core.require_available()
        store = core.store
        assert store is not None
        limit = max(1, min(limit, LOG_PAGE_RECORDS_MAX))
        records = store.read_log_matching(needle, until_ms, before_lsn, limit)
        first = store.first_lsn()
        oldest = store.read_log_events(first - 1, 1)
        since_ms = oldest[0][1] if oldest else None
        if not oldest and first > 1:
            # Records after the newest snapshot's start are never pruned: an empty log means
            # nothing changed since that snapshot began.
            snapshot = store.latest_snapshot()
            since_ms = None if snapshot is None else snapshot.at_ms
        return first, since_ms, within_bytes(records, LOG_PAGE_BYTES_MAX)

    # Reads wait for the batch in flight, if any: a replicated primary answers only what a
    # majority has (`ShardCore.settled`).

    async def get_skus(self, skus: Sequence[str]) -> list[SkuView | None]:
        await self._core.settled()
        return self._core.read_skus(skus)

    async def get_hold(self, hold_id: str) -> HoldView | None:
        await self._core.settled()
        return self._core.read_hold(hold_id)

    async def alerts(self) -> list[Alert]:
        """The low SKU-locations: (sku, location, available, low_stock_below), sorted."""
        await self._core.settled()
        return self._core.read_alerts()

    async def get_threshold(self, sku: str, location: str) -> ThresholdView:
        await self._core.settled()
        return self._core.read_threshold(sku, location)

    async def status(self) -> ShardStatus:
        core, ledger, snaps, counters = (
            self._core,
            self._core.ledger,
            self._core.snapshots,
            self._core.counters,
        )
        return ShardStatus(
            core.shard_id,
            self._path,
            os.getpid(),
            core.available,
            core.last_lsn,
            core.queue_depth,
            len(ledger.skus),
            ledger.level_count,
            ledger.active_hold_count,
            len(ledger.holds),
            counters.batches,
            counters.commands,
            counters.records,
            counters.storage_failures,
            counters.overloaded,
            counters.recovery_seconds,
            snaps.completed,
            snaps.last_start_lsn,
            snaps.records_since,
            len(ledger.unsettled),
        )

    async def snapshot(self) -> bool:
        """Take a snapshot now and wait for it."""
        return await self._core.snapshots.start(_now_ms())

    async def fail_next_writes(self, count: int) -> None:
        """Test hook: the next `count` log writes fail inside their transaction."""
        await self.inject_fault(Fault.IO_ERROR, count)

    async def inject_fault(self, fault: str, value: float = 1) -> None:
        """Test hook (see `fault_hooks.Fault`): refused unless the shard's config allows it.
        Faults last until they fire or the process restarts."""
        if not self._config.allow_fault_injection:
            raise PermissionError("fault injection is disabled for this shard")
        store, hooks = self._store, self._faults
        match Fault(fault):
            case Fault.CRASH_AFTER_COMMIT:
                hooks.crash_after_commit = True
            case Fault.IO_ERROR if store is not None:
                store.failing_appends = int(value)
            case Fault.DISK_FULL if store is not None:
                store.stop_growing()
            case Fault.CLOCK_JUMP:
                hooks.clock_offset_ms += int(value * 1000)
            case Fault.CLOCK_FREEZE:
                hooks.frozen_clock_ms = self._clock_ms() if value else None
            case Fault.SKIP_IDEMPOTENCY:
                hooks.skip_idempotency = bool(value)
            case Fault.ACK_BEFORE_COMMIT:
                hooks.ack_before_commit_seconds = float(value)
            case Fault.REFUSE_RETRIES:
                hooks.refuse_retries = bool(value)
            case Fault.SKIP_SEAL:
                hooks.skip_seal = bool(value)
            case _:
                raise RuntimeError(f"shard {self._core.shard_id} is recovering: try {fault} later")
