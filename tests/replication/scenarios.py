"""Faults on a private replicated cluster, run in a process of their own (a test process holds
the session's Ray instance): `python -m tests.replication.scenarios NAME OUT.json` runs one and
writes what it observed, which `test_failover.py` checks."""

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray

from harness.replicated import ReplicatedCluster
from inventory_actors.cluster.replica_sets import PrimaryHandles
from inventory_actors.cluster.replica_status import replica_status
from inventory_actors.cluster.wire import decode_outcomes, encode_submissions
from inventory_actors.domain import AdjustStock
from inventory_actors.replication.protocol import ReplicaState
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.protocol import Submission

WRITERS_PER_SHARD = 3
LOCATION = "wh"


class Load:
    """Writers that add 1 to a SKU of their own with a new key each time, retrying a key whose
    outcome is unknown until it is answered; every answer is timed."""

    def __init__(self, replicated: ReplicatedCluster, shards: int) -> None:
        self.replicated = replicated
        self.client = replicated.client
        self.skus: dict[str, int] = {}
        for shard_id in range(shards):
            found = [
                s
                for s in (f"sku-{n}" for n in range(2_000))
                if self.client.partition.owner(sku=s) == shard_id
            ]
            for sku in found[:WRITERS_PER_SHARD]:
                self.skus[sku] = shard_id
        self.acked: Counter[str] = Counter()
        # (sent, acknowledged) of each acknowledged attempt.
        self.ack_times: dict[int, list[tuple[float, float]]] = {s: [] for s in range(shards)}
        self.failures: dict[int, list[float]] = {s: [] for s in range(shards)}
        self.stopped = False
        self.reads = self.failed_reads = 0

    async def writer(self, sku: str) -> None:
        shard_id, count = self.skus[sku], 0
        while not self.stopped:
            count += 1
            key = f"{sku}-{count}"
            submission = Submission(AdjustStock(sku, LOCATION, 1, "received"), key)
            while True:
                sent = time.monotonic()
                outcome = (await self.client.call_shard(shard_id, [submission]))[0]
                if outcome.ok:
                    self.acked[sku] += 1
                    self.ack_times[shard_id].append((sent, time.monotonic()))
                    break
                assert isinstance(outcome.value, ShardUnavailable), outcome.value
                self.failures[shard_id].append(time.monotonic())
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.005)

    async def reader(self) -> None:
        """Reads every SKU of the load, again and again; counts those that fail."""
        while not self.stopped:
            try:
                await self.client.get_skus_async(list(self.skus))
                self.reads += 1
            except ShardUnavailable:
                self.failed_reads += 1
            await asyncio.sleep(0.01)

    def first_ack_after(self, shard_id: int, moment: float) -> float | None:
        """Seconds from `moment` to the first acknowledgement of a write sent after it."""
        later = [acked for sent, acked in self.ack_times[shard_id] if sent > moment]
        return min(later) - moment if later else None

    def lost(self) -> dict[str, tuple[int, int]]:
        """SKUs whose stock is not what their acknowledged adds make it."""
        views = self.client.get_skus(list(self.skus))
        found = {}
        for sku, view in zip(self.skus, views, strict=True):
            on_hand = 0 if view is None else sum(level.on_hand for level in view.locations)
            if on_hand != self.acked[sku]:
                found[sku] = (on_hand, self.acked[sku])
        return found


async def _with_load(
    replicated: ReplicatedCluster, shards: int, fault: Callable[[Load], Any], read: bool = False
) -> tuple[Load, Any]:
    load = Load(replicated, shards)
    tasks = [asyncio.create_task(load.writer(sku)) for sku in load.skus]
    if read:
        tasks.append(asyncio.create_task(load.reader()))
    await asyncio.sleep(1.0)
    result = await fault(load)
    load.stopped = True
    await asyncio.gather(*tasks)
    return load, result


def replica_votes(replicated: ReplicatedCluster, shard_id: int) -> bool:
    """Every member of the shard answers and votes with the disk it has now."""
    replica_set = replicated.replica_set(shard_id)
    for member in replica_set.members:
        handle: Any = ray.get_actor(member.name, namespace=replicated.namespace)
        state: ReplicaState = ray.get(handle.replica_role.remote(), timeout=2)[1]
        if state.disk_id != member.disk_id or state.last_lsn == 0:
            return False
    return True


# Snapshots and pruning during the run: a replica on a new disk must copy a snapshot, the
# log it needs being gone from the primary.
PRUNING = ShardConfig(
    snapshot_every_records=100,
    event_retention_seconds=1.0,
    housekeeping_interval_seconds=0.5,
)


def replicas_agree(replicated: ReplicatedCluster, shard_id: int) -> dict[str, Any] | None:
    """Each member's (LSN, digest of its state) once they all agree, else None."""
    found = {}
    for member in replicated.replica_set(shard_id).members:
        handle: Any = ray.get_actor(member.name, namespace=replicated.namespace)
        found[member.name] = ray.get(handle.replica_digest.remote(), timeout=2)
    return found if len(set(found.values())) == 1 else None


async def pruned_log(replicated: ReplicatedCluster, shard_id: int) -> int:
    """Have the shard's primary take a snapshot and prune its log; its first LSN then."""
    primary: Any = ray.get_actor(replicated.replica_set(shard_id).primary, replicated.namespace)
    await primary.snapshot.remote()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        first_lsn, _ = await primary.read_feed.remote(0, 1)
        if first_lsn > 1:
            return int(first_lsn)
        await asyncio.sleep(0.1)
    raise TimeoutError("the primary kept its whole log")


def whole_copies(replicated: ReplicatedCluster, shard_id: int) -> int:
    total = 0
    for member in replicated.replica_set(shard_id).members:
        handle: Any = ray.get_actor(member.name, namespace=replicated.namespace)
        total += ray.get(handle.replica_role.remote(), timeout=2)[3]
    return total


def node_loss(out: dict[str, Any], freeze: bool) -> None:
    replicated = ReplicatedCluster.start(shards=2, hosts=4, shard_config=PRUNING)
    try:
        victim = replicated.primary_host(0)
        untouched = [
            s for s in range(2) if victim not in [m.host for m in replicated.replica_set(s).members]
        ]

        async def fault(load: Load) -> dict[str, Any]:
            before = replicated.replica_set(0)
            if freeze:
                old: Any = ray.get_actor(before.primary, namespace=replicated.namespace)
                replicated.freeze_host(victim)
            else:
                replicated.kill_host(victim, wipe_disk=True)
            moment = time.monotonic()
            if freeze:
                # A write sent to the frozen primary itself: it runs when the host resumes.
                zombie_ref: Any = old.execute.remote(
                    encode_submissions([Submission(AdjustStock("zombie", LOCATION, 7, "received"))])
                )
            await asyncio.sleep(0)
            while load.first_ack_after(0, moment) is None and time.monotonic() - moment < 30:
                await asyncio.sleep(0.02)
            failover = load.first_ack_after(0, moment)
            await asyncio.sleep(1.0)
            fault_window = [t for s in untouched for t in load.failures[s] if t > moment]
            facts: dict[str, Any] = {
                "failover_seconds": failover,
                "untouched_shards": untouched,
                "untouched_failures": len(fault_window),
                "epoch_before": before.epoch,
                "epoch_after": replicated.replica_set(0).epoch,
            }
            if freeze:
                replicated.thaw_host(victim)
                answer = decode_outcomes(await zombie_ref)[0]
                facts["zombie_answer_ok"] = answer.ok
                facts["zombie_answer"] = repr(answer.value)
            else:
                # The new primary no longer holds the log from its start: the replica on the
                # new disk must copy a snapshot.
                await pruned_log(replicated, 0)
                replicated.add_host(victim)
                started = time.monotonic()
                replicated.wait_for(lambda: replica_votes(replicated, 0), 60, "full replica set")
                facts["rejoin_seconds"] = time.monotonic() - moment
                facts["rejoin_after_host_back_seconds"] = time.monotonic() - started
            return facts

        load, facts = asyncio.run(_with_load(replicated, 2, fault))
        facts["acked"] = sum(load.acked.values())
        facts["acked_by_shard"] = {
            shard: sum(n for sku, n in load.acked.items() if load.skus[sku] == shard)
            for shard in (0, 1)
        }
        facts["lost"] = load.lost()
        agreed = replicated.wait_for(lambda: replicas_agree(replicated, 0), 30, "replicas agree")
        facts["replicas_agree_at_lsn"] = next(iter(agreed.values()))[0]
        facts["whole_copies"] = whole_copies(replicated, 0)
        zombie = replicated.client.get_sku("zombie")
        facts["zombie_stock"] = None if zombie is None else zombie.locations[0].on_hand
        out.update(facts)
    finally:
        replicated.shutdown()


def zombie(out: dict[str, Any], seal: bool) -> None:
    """A primary frozen while its shard is idle, replaced, then sent a write and resumed: the
    new primary has written nothing yet, so only the seal stops a follower from taking the old
    primary's batch."""
    config = ShardConfig(allow_fault_injection=True)
    replicated = ReplicatedCluster.start(shards=1, hosts=3, shard_config=config)
    try:
        client = replicated.client
        client.adjust("before", LOCATION, 5)
        before = replicated.replica_set(0)
        handles: dict[str, Any] = {
            m.name: ray.get_actor(m.name, namespace=replicated.namespace) for m in before.members
        }
        if not seal:
            ray.get([h.inject_fault.remote("skip-seal", 1) for h in handles.values()])
        victim = replicated.primary_host(0)
        replicated.freeze_host(victim)
        moment = time.monotonic()

        def replaced() -> bool:
            now = replicated.replica_set(0)
            role: str = ray.get(handles[now.primary].replica_role.remote(), timeout=2)[0]
            return now.epoch > before.epoch and role == "primary"

        replicated.wait_for(replaced, 30, "a new primary")
        out["failover_seconds"] = time.monotonic() - moment
        write = Submission(AdjustStock("zombie", LOCATION, 7, "received"))
        ref: Any = handles[before.primary].execute.remote(encode_submissions([write]))
        replicated.thaw_host(victim)
        answer = decode_outcomes(ray.get(ref, timeout=30))[0]
        out["zombie_answer_ok"] = answer.ok
        out["zombie_answer"] = repr(answer.value)
        zombie_view = client.get_sku("zombie")
        out["zombie_stock"] = None if zombie_view is None else zombie_view.locations[0].on_hand
        before_view = client.get_sku("before")
        out["before_stock"] = None if before_view is None else before_view.locations[0].on_hand
    finally:
        replicated.shutdown()


def rolling_upgrade(out: dict[str, Any]) -> None:
    """Every replica of shard 0 restarted in turn under load, followers first, then a planned
    switchover, then the old primary: no request may fail."""
    replicated = ReplicatedCluster.start(shards=2, hosts=3)
    try:

        async def upgrade(load: Load) -> dict[str, Any]:
            namespace = replicated.namespace
            before = replicated.replica_set(0)
            followers = [m.name for m in before.members if m.name != before.primary]
            for name in followers:
                await restarted(replicated, name)
            primary: Any = ray.get_actor(before.primary, namespace=namespace)
            started = time.monotonic()
            new_primary = await primary.hand_over.remote(None)
            switchover_seconds = time.monotonic() - started
            await restarted(replicated, before.primary)
            await asyncio.sleep(1.0)
            return {
                "new_primary": new_primary,
                "old_primary": before.primary,
                "switchover_seconds": switchover_seconds,
                "epoch_after": replicated.replica_set(0).epoch,
            }

        load, facts = asyncio.run(_with_load(replicated, 2, upgrade, read=True))
        facts["acked"] = sum(load.acked.values())
        facts["failed_writes"] = sum(len(times) for times in load.failures.values())
        facts["failed_reads"] = load.failed_reads
        facts["reads"] = load.reads
        facts["lost"] = load.lost()
        handles = replicated.client.shards
        assert isinstance(handles, PrimaryHandles)
        facts["status"] = replica_status(handles)
        out.update(facts)
    finally:
        replicated.shutdown()


async def restarted(replicated: ReplicatedCluster, name: str) -> None:
    """Kill a replica's process (Ray starts it again, as an upgrade would) and wait until it
    holds the primary's whole log again."""
    handle: Any = ray.get_actor(name, namespace=replicated.namespace)
    pid = (await handle.status.remote()).pid
    ray.kill(handle, no_restart=False)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        try:
            status = await handle.status.remote()
            role, state, _, _ = await handle.replica_role.remote()
        except ray.exceptions.RayError:
            continue
        primary = replicated.replica_set(0).primary
        if status.pid == pid or primary == name:
            continue
        primary_handle: Any = ray.get_actor(primary, namespace=replicated.namespace)
        primary_state = (await primary_handle.replica_role.remote())[1]
        if role == "follower" and state.last_lsn >= primary_state.last_lsn - 5:
            return
    raise TimeoutError(f"{name} did not come back")


SCENARIOS: dict[str, Callable[[dict[str, Any]], None]] = {
    "rolling-upgrade": rolling_upgrade,
    "zombie": lambda out: zombie(out, seal=True),
    "zombie-without-seal": lambda out: zombie(out, seal=False),
    "node-kill-wipe": lambda out: node_loss(out, freeze=False),
    "node-freeze": lambda out: node_loss(out, freeze=True),
}


def main() -> None:
    name, path = sys.argv[1], Path(sys.argv[2])
    out: dict[str, Any] = {"scenario": name}
    started = time.monotonic()
    try:
        SCENARIOS[name](out)
    finally:
        out["seconds"] = time.monotonic() - started
        path.write_text(json.dumps(out, indent=2, default=repr))


if __name__ == "__main__":
    main()
