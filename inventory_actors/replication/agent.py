"""One replica of a shard: follower or primary, and the moves between them.

A follower takes shipped batches that continue its log, copies what it lacks by itself, and,
having heard nothing from a primary for `failover_after_seconds`, takes the next epoch in etcd
by compare-and-swap and seals it: a majority of voters promise the epoch (and refuse older
ones from then on), the longest log among them by (epoch, LSN) becomes this replica's, and it
serves. A primary steps down when a batch finds no majority in time or a replica promised a
newer epoch (docs/replication.md)."""

import asyncio
import enum
import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from ray.exceptions import RayError

from inventory_actors.replication import copying, election, switchover
from inventory_actors.replication.config import ReplicationConfig
from inventory_actors.replication.epoch_store import EpochStore
from inventory_actors.replication.membership import ReplicaSet
from inventory_actors.replication.protocol import (
    ReplicaState,
    SealAnswer,
    ShipAnswer,
    as_records,
)
from inventory_actors.replication.shipper import Shipper
from inventory_actors.shard.core import ShardCore
from inventory_actors.shard.errors import NotPrimary
from persistence import StorageError, epoch_at

log = logging.getLogger(__name__)

TICK_SECONDS = 0.05
# A primary checks etcd this often that it still holds its epoch.
EPOCH_CHECK_SECONDS = 1.0


class Role(enum.Enum):
    FOLLOWER = "follower"
    CANDIDATE = "candidate"
    PRIMARY = "primary"


class ReplicaAgent:
    """The replication side of replica `name` of shard `core.shard_id`."""

    def __init__(
        self,
        core: ShardCore,
        name: str,
        config: ReplicationConfig,
        handle_of: Callable[[str], Any],
    ) -> None:
        self.core, self.name, self.config = core, name, config
        self.handle_of = handle_of
        self.epochs = EpochStore(config.etcd_url, config.cluster)
        self.role = Role.FOLLOWER
        self.replica_set: ReplicaSet | None = None
        self.shipper: Shipper | None = None
        self.last_heard = time.monotonic()
        self._seen_epoch = 0
        self._primary_name = ""
        self._copy_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._promoting: set[str] = set()
        self.failovers = 0
        self.whole_copies = 0
        self._campaigning = False
        self._refuse()

    # -- state -----------------------------------------------------------------------------

    @property
    def promised_epoch(self) -> int:
        store = self.core.store
        return 0 if store is None else store.promised_epoch()

    def state(self) -> ReplicaState:
        store = self.core.store
        if store is None:
            return ReplicaState(0, 0, 0, "")
        last_lsn = self.core.last_lsn
        return ReplicaState(
            store.promised_epoch(), last_lsn, epoch_at(store.epochs(), last_lsn), store.disk_id()
        )

    def _refuse(self) -> None:
        self.core.refusal = NotPrimary(self.core.shard_id, self.promised_epoch, self._primary_name)

    def start(self) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._run()))

    # -- follower: shipped batches, seals, copies ------------------------------------------

    def on_replicate(
        self,
        epoch: int,
        primary: str,
        prev_lsn: int,
        prev_epoch: int,
        plain_records: Sequence[Sequence[Any]],
        plain_idempotency: Sequence[Sequence[Any]],
    ) -> ShipAnswer:
        """A batch of the primary of `epoch`, as plain tuples (`protocol.as_records`)."""
        records, idempotency = as_records(plain_records, plain_idempotency)
        store = self.core.store
        if store is None:
            return ShipAnswer(False, self.state())
        sealed = not self.core.faults.skip_seal
        if epoch < store.promised_epoch() and sealed:
            return ShipAnswer(False, self.state())
        if self.role is not Role.FOLLOWER and epoch > self._own_epoch() and sealed:
            self.step_down(f"epoch {epoch} has primary {primary}")
        if epoch > store.promised_epoch() and sealed:
            store.promise_epoch(epoch)
        if self.role is not Role.FOLLOWER:
            return ShipAnswer(False, self.state())
        self.last_heard = time.monotonic()
        if self.core.installing:
            return ShipAnswer(False, self.state())
        if self._primary_name != primary:
            self._primary_name = primary
            self._refuse()
        last_lsn = self.core.last_lsn
        if prev_lsn != last_lsn or prev_epoch != epoch_at(store.epochs(), last_lsn):
            self._start_copy(primary)
            return ShipAnswer(False, self.state())
        if not records and not idempotency:
            return ShipAnswer(True, self.state())
        try:
            if records:
                store.add_epoch(epoch, records[0].lsn)
            self.core.apply_copied(records, idempotency)
        except (StorageError, ValueError) as error:
            log.error("shard %d: could not take a batch: %r", self.core.shard_id, error)
            self.core.rebuild()
            return ShipAnswer(False, self.state())
        return ShipAnswer(True, self.state())

    def on_seal(self, epoch: int, candidate: str) -> SealAnswer:
        store = self.core.store
        if store is None or epoch < store.promised_epoch():
            return SealAnswer(False, self.state())
        if self.core.faults.skip_seal:
            return SealAnswer(True, self.state())
        heard = time.monotonic() - self.last_heard < self.config.seal_quiet_seconds
        if heard and self.role is Role.FOLLOWER and candidate != self.name:
            # The primary's read lease rests on this: no promise while it is heard.
            return SealAnswer(False, self.state())
        if self.role is Role.PRIMARY and epoch > self._own_epoch():
            self.step_down(f"{candidate} seals epoch {epoch}")
        store.promise_epoch(epoch)
        if candidate != self.name:
            self.last_heard = time.monotonic()
            self._primary_name = candidate
            self._refuse()
        return SealAnswer(True, self.state())

    def _own_epoch(self) -> int:
        return 0 if self.shipper is None else self.shipper.epoch

    def _start_copy(self, source: str) -> None:
        if self._copy_task is None or self._copy_task.done():
            self._copy_task = asyncio.get_running_loop().create_task(self._copy(source))

    async def _copy_from(self, source: str) -> None:
        """Copy what this replica lacks from `source` (while it copies a whole log, shipped
        batches are refused and no snapshot starts: `ShardCore.installing`)."""
        self.whole_copies += await copying.copy_from(self.core, self.handle_of(source))

    async def _copy(self, source: str) -> None:
        try:
            await self._copy_from(source)
        except (RayError, StorageError, RuntimeError, ValueError) as error:
            log.warning("shard %d: copy from %s failed: %r", self.core.shard_id, source, error)

    # -- the loop: heartbeats, failure detection ---------------------------------------------

    async def _run(self) -> None:
        await self._on_start()
        last_check = last_housekeeping = time.monotonic()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                now = time.monotonic()
                housekeeping = self.core.config.housekeeping_interval_seconds
                if self.role is Role.FOLLOWER and now - last_housekeeping >= housekeeping:
                    last_housekeeping = now
                    self._housekeep()
                shipper = self.shipper
                if self.role is Role.PRIMARY and shipper is not None:
                    if now - shipper.last_sent_monotonic >= self.config.heartbeat_seconds:
                        shipper.heartbeat()
                    if now - last_check >= EPOCH_CHECK_SECONDS:
                        last_check = now
                        await self._check_epoch()
                elif self.role is Role.FOLLOWER and self._silent_for() > self._patience():
                    await self._campaign()
            except Exception:
                log.exception("shard %d: replica loop", self.core.shard_id)

    def _housekeep(self) -> None:
        """A follower's own snapshots and retention: its log must not grow without end, nor
        its recovery replay all of it (a primary does this in its timers)."""
        core = self.core
        if core.store is None or core.installing:
            return
        core.snapshots.maybe_start(core.clock_ms())
        core.timers.prune_storage()

    def _silent_for(self) -> float:
        return time.monotonic() - self.last_heard

    def _patience(self) -> float:
        jitter = random.random() * self.config.failover_jitter_seconds
        return self.config.failover_after_seconds + jitter

    async def campaign_now(self) -> None:
        """Take the first epoch, when named its primary, without waiting for silence."""
        found = await asyncio.to_thread(self.epochs.read, self.core.shard_id)
        if found is None or self.role is not Role.FOLLOWER:
            return
        replica_set = found[0]
        if replica_set.primary == self.name and replica_set.epoch > self.promised_epoch:
            await self._campaign()

    async def _on_start(self) -> None:
        """A replica named primary in etcd when it starts was restarted (or is the first
        primary of a new set): it takes the next epoch at once instead of waiting."""
        found = await asyncio.to_thread(self.epochs.read, self.core.shard_id)
        if found is not None and found[0].primary == self.name:
            await self._campaign()

    async def _check_epoch(self) -> None:
        found = await asyncio.to_thread(self.epochs.read, self.core.shard_id)
        if found is None or self.shipper is None:
            return
        replica_set, _ = found
        if replica_set.epoch > self.shipper.epoch and not self.core.faults.skip_seal:
            self.step_down(f"etcd names {replica_set.primary} for epoch {replica_set.epoch}")
        else:
            self.shipper.replica_set = replica_set

    async def _campaign(self) -> None:
        if self._campaigning:
            return
        self._campaigning = True
        try:
            await self._try_epoch()
        finally:
            self._campaigning = False

    async def _try_epoch(self) -> None:
        found = await asyncio.to_thread(self.epochs.read, self.core.shard_id)
        if found is None:
            self.last_heard = time.monotonic()
            return
        replica_set, text = found
        promised = self.promised_epoch
        state = self.state()
        if not replica_set.votes(self.name, state.disk_id):
            self.last_heard = time.monotonic()
            return
        newer = replica_set.epoch > promised and replica_set.primary != self.name
        if newer and replica_set.epoch != self._seen_epoch:
            # A newer primary may be sealing right now: give it time to be heard.
            self._seen_epoch = replica_set.epoch
            self.last_heard = time.monotonic()
            return
        if replica_set.primary == self.name and replica_set.epoch > promised:
            chosen = replica_set
        else:
            chosen = replica_set.next_epoch(self.name)
            timeout = self.config.seal_timeout_seconds
            if not await election.prevoted(chosen, self.name, self.handle_of, timeout):
                # Most voters still hear a primary (this replica alone is cut off from it):
                # taking an epoch would only disturb a working shard.
                self.last_heard = time.monotonic()
                return
            taken = await asyncio.to_thread(self.epochs.swap, self.core.shard_id, text, chosen)
            if not taken:
                self.last_heard = time.monotonic()
                return
        await self._promote(chosen)

    def on_prevote(self, epoch: int) -> tuple[bool, str]:
        """Would this replica promise `epoch` now (it hears no primary)? Changes nothing."""
        state = self.state()
        silent = time.monotonic() - self.last_heard >= self.config.seal_quiet_seconds
        willing = self.role is Role.FOLLOWER and silent and epoch > state.promised_epoch
        return willing, state.disk_id

    # -- becoming primary ------------------------------------------------------------------

    async def _promote(self, replica_set: ReplicaSet) -> None:
        self.role = Role.CANDIDATE
        started = time.monotonic()
        try:
            own = self.on_seal(replica_set.epoch, self.name)
            sealed = await election.sealed(
                replica_set, self.name, own, self.handle_of, self.config.seal_timeout_seconds
            )
            if sealed is None:
                log.warning(
                    "shard %d: no majority sealed epoch %d", self.core.shard_id, replica_set.epoch
                )
                self._become_follower()
                return
            best_name, best = sealed
            mine = self.state()
            if (best.last_epoch, best.last_lsn) > (mine.last_epoch, mine.last_lsn):
                await self._copy_from(best_name)
                if not replica_set.votes(self.name, self.state().disk_id):
                    raise RuntimeError("its log had to be copied whole: it votes no more")
        except (RayError, StorageError, RuntimeError, ValueError) as error:
            log.warning("shard %d: promotion failed: %r", self.core.shard_id, error)
            self._become_follower()
            return
        store = self.core.store
        assert store is not None
        last_lsn = self.core.last_lsn
        store.add_epoch(replica_set.epoch, last_lsn + 1)
        self.shipper = Shipper(
            self.name,
            replica_set,
            (last_lsn, epoch_at(store.epochs(), last_lsn)),
            self.config,
            self.handle_of,
            self._lost,
            self._caught_up,
        )
        self.replica_set, self._primary_name = replica_set, self.name
        self.role = Role.PRIMARY
        self.failovers += 1
        self.core.lead(self.shipper)
        self.shipper.heartbeat()
        log.warning(
            "shard %d: %s is primary of epoch %d at lsn %d after %.3f s",
            self.core.shard_id,
            self.name,
            replica_set.epoch,
            last_lsn,
            time.monotonic() - started,
        )

    # -- stepping down -----------------------------------------------------------------------

    def _lost(self, error: BaseException) -> None:
        self.step_down(f"lost its majority: {error!r}")

    def step_down(self, why: str) -> None:
        if self.role is not Role.PRIMARY:
            return
        log.warning("shard %d: %s steps down: %s", self.core.shard_id, self.name, why)
        self._become_follower()

    def _become_follower(self) -> None:
        if self.shipper is not None:
            self.shipper.closed = True
        self.role = Role.FOLLOWER
        self._refuse()
        self.core.follow(self.core.refusal or NotPrimary(self.core.shard_id, 0, ""))
        self.shipper = None
        self.last_heard = time.monotonic()

    async def hand_over(self, target: str | None) -> str:
        """A planned switchover to `target` (or the most advanced follower): `switchover`."""
        return await switchover.hand_over(self, target)

    def _caught_up(self, name: str, disk_id: str) -> None:
        """A member on a new disk has the whole log: it votes again (etcd, compare-and-swap)."""
        if name not in self._promoting:
            self._promoting.add(name)
            task = asyncio.get_running_loop().create_task(self._admit(name, disk_id))
            self._tasks.append(task)

    async def _admit(self, name: str, disk_id: str) -> None:
        try:
            found = await asyncio.to_thread(self.epochs.read, self.core.shard_id)
            shipper = self.shipper
            if found is None or shipper is None or found[0].epoch != shipper.epoch:
                return
            replica_set, text = found
            admitted = replica_set.with_disk(name, disk_id)
            if await asyncio.to_thread(self.epochs.swap, self.core.shard_id, text, admitted):
                shipper.replica_set = admitted
                log.warning("shard %d: %s votes again (disk %s)", self.core.shard_id, name, disk_id)
        finally:
            self._promoting.discard(name)
