"""The shard actor's calls for replication (`inventory_actors.replication`): shipped batches,
seals and pre-votes from other replicas, copies of its log, a planned switchover, and what
`inventory status` shows of each replica. Only replicated shards answer them."""

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import ray

from inventory_actors.replication import copying
from inventory_actors.replication.agent import ReplicaAgent
from inventory_actors.replication.protocol import (
    ReplicaState,
    SealAnswer,
    ShipAnswer,
    SnapshotCopy,
    TailPage,
)
from inventory_actors.shard.core import ShardCore
from persistence import IdempotencyRecord


class ReplicaEndpoints:
    """Mixed into `ShardActor`, whose `_core`, `_agent` and `_path` these use."""

    _core: ShardCore
    _agent: ReplicaAgent | None
    _path: str

    def _replica(self) -> ReplicaAgent:
        if self._agent is None:
            raise RuntimeError(f"shard {self._core.shard_id} is not replicated")
        return self._agent

    @ray.method(num_returns=1, max_task_retries=0, retry_exceptions=False)
    async def replicate(
        self,
        epoch: int,
        primary: str,
        prev_lsn: int,
        prev_epoch: int,
        records: Sequence[Sequence[Any]],
        idempotency: Sequence[Sequence[Any]],
    ) -> ShipAnswer:
        """A batch (or, empty, a heartbeat) of the primary of `epoch`: log and idempotency
        records as plain tuples."""
        return self._replica().on_replicate(
            epoch, primary, prev_lsn, prev_epoch, records, idempotency
        )

    async def seal(self, epoch: int, candidate: str) -> SealAnswer:
        """Promise `epoch` to `candidate`: refuse every older epoch from now on."""
        return self._replica().on_seal(epoch, candidate)

    async def campaign(self) -> None:
        """Become the primary now if etcd allows (the first primary of a new replica set)."""
        await self._replica().campaign_now()

    async def hand_over(self, target: str | None = None) -> str:
        """A planned switchover from this primary to `target` (or the most advanced
        follower), without failing a request; the new primary's name."""
        return await self._replica().hand_over(target)

    async def prevote(self, epoch: int) -> tuple[bool, str]:
        """Would this replica promise `epoch` now? (disk id too); changes nothing."""
        return self._replica().on_prevote(epoch)

    async def replica_state(self) -> ReplicaState:
        return self._replica().state()

    async def replica_role(self) -> tuple[str, ReplicaState, int, int]:
        """(role, state, epochs won, whole copies taken from another replica)."""
        agent = self._replica()
        return agent.role.value, agent.state(), agent.failovers, agent.whole_copies

    async def replica_status(self) -> dict[str, Any]:
        """Where this replica runs and where it stands, for `inventory status`."""
        agent = self._replica()
        state = agent.state()
        return {
            "name": agent.name,
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
            "role": agent.role.value,
            "epoch": state.promised_epoch,
            "lsn": state.last_lsn,
            "last_epoch": state.last_epoch,
            "disk_id": state.disk_id,
            "file": self._path,
            "epochs_won": agent.failovers,
            "whole_copies": agent.whole_copies,
        }

    async def replica_digest(self) -> tuple[int, str]:
        """(last LSN, a digest of the stock and holds in memory): replicas at the same LSN
        agree on it."""
        ledger = self._core.ledger
        stock = sorted((sku, ledger.sku_view(sku)) for sku in ledger.skus)
        holds = sorted((hold_id, hold.status.value) for hold_id, hold in ledger.holds.items())
        text = repr((stock, holds)).encode()
        return self._core.last_lsn, hashlib.sha256(text).hexdigest()

    async def read_tail(self, after_lsn: int, after_epoch: int, limit: int) -> TailPage | None:
        return copying.read_tail(self._core, after_lsn, after_epoch, limit)

    async def read_idempotency(
        self, since_ms: int, after_key: str, limit: int
    ) -> list[IdempotencyRecord]:
        self._core.require_store()
        assert self._core.store is not None
        limit = max(1, min(limit, copying.IDEMPOTENCY_PAGE_RECORDS))
        return self._core.store.read_idempotency_since(since_ms, after_key, limit)

    async def export_snapshot(self) -> SnapshotCopy | None:
        return copying.export_snapshot(self._core)

    async def ping(self) -> str:
        return self._path
