"""The faults of a chaos run, injected at random moments drawn from the run's seed.

Kinds are taken in turns from a shuffled deck, so even a short run injects every kind. In the
replicated mode the host and primary faults alternate with the others, each from a deck of its
own, so a short run has each of those several times.
"""

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from chaos.cluster import REPLICA_TITLE, ChaosCluster, add_shard_host
from chaos.history import FaultRecord, History
from chaos.workload import LOCATIONS
from harness.replicated import ReplicatedCluster
from inventory_actors.cluster.wire import decode_outcomes, encode_submissions
from inventory_actors.domain import AdjustStock
from inventory_actors.restock.job import ROWS_PER_CHUNK, job_spec
from inventory_actors.restock.runtime import jobs_actor
from inventory_actors.shard.fault_hooks import Fault
from inventory_actors.shard.protocol import Submission
from inventory_cli.restock import restock_command

SHARD_KILL = "shard-kill"
CRASH_AFTER_COMMIT = "crash-after-commit"
REPLICA_KILL = "replica-kill"
RESTOCK_DRIVER_KILL = "restock-driver-kill"
NODE_LOSS = "node-loss"
IO_ERROR = "io-error"
DISK_FULL = "disk-full"
CLOCK_JUMP = "clock-jump"
KINDS = (
    SHARD_KILL,
    CRASH_AFTER_COMMIT,
    REPLICA_KILL,
    RESTOCK_DRIVER_KILL,
    NODE_LOSS,
    IO_ERROR,
    DISK_FULL,
    CLOCK_JUMP,
)
HOST_KILL_WIPE = "host-kill-wipe"
HOST_FREEZE = "host-freeze"
PRIMARY_KILL = "primary-kill"
# Faults of replica sets: they alternate with the other kinds of a replicated run.
REPLICATION_KINDS = (HOST_KILL_WIPE, HOST_FREEZE, PRIMARY_KILL)
# The replicated mode's deck. Left out: `shard-kill`, which in a replica set is `primary-kill`
# (a follower's death changes nothing a client sees), and `node-loss`, whose replacement node is
# anonymous: replicas are held to their own host, and `host-kill-wipe` brings that host back.
REPLICATED_KINDS = (
    *REPLICATION_KINDS,
    CRASH_AFTER_COMMIT,
    REPLICA_KILL,
    RESTOCK_DRIVER_KILL,
    IO_ERROR,
    DISK_FULL,
    CLOCK_JUMP,
)
# Faults whose time to the first acknowledged write after them is measured (`chaos.probes`).
FAILOVER_KINDS = REPLICATION_KINDS
# How long a killed host stays away, and a frozen one frozen.
HOST_DOWN_SECONDS = (2.0, 5.0)
HOST_FROZEN_SECONDS = (2.0, 8.0)
# The share of host faults on a host holding no primary, when there is one.
FOLLOWER_HOST_SHARE = 0.25
# Units a write sent to a frozen primary adds; it must never be acknowledged.
ZOMBIE_UNITS = 7
ZOMBIE_ANSWER_SECONDS = 30.0
# After a frozen host resumes, Ray is asked this much later whether it still counts the node.
THAWED_CHECK_SECONDS = 1.0
# A killed shard, node or replica must be back within this long, or the run fails.
RECOVERY_TIMEOUT_SECONDS = 120.0
CLOCK_JUMPS_SECONDS = (-60, -5, 5, 30, 120)
# A restock driver (a new process: imports, connects) begins its job within this long.
RESTOCK_BEGIN_TIMEOUT_SECONDS = 60.0
RESTOCK_RUN_TIMEOUT_SECONDS = 600.0
# Runs of a job's file after the load, until it has succeeded.
RESTOCK_RUNS_MAX = 3
# A file that breaks late: its first chunk reads well, a row after it does not parse.
LATE_BREAK_ROWS = ROWS_PER_CHUNK + 2_000
REUSED_ID_ROWS = 100


class Injector:
    def __init__(
        self,
        cluster: ChaosCluster,
        history: History,
        seed: int,
        now: Callable[[], float],
        kinds: tuple[str, ...] = KINDS,
        restock_rows: int = 20_000,
        skus: list[str] | None = None,
        late_broken_restock: bool = False,
        reused_job_id: bool = False,
    ) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = random.Random(seed)
        self.now = now
        self.kinds = kinds
        self.deck: list[str] = []
        self.replication_deck: list[str] = []
        self.replication_turn = True
        # Host fault kinds that have struck a primary's host so far.
        self.primary_hosts_hit: set[str] = set()
        # Writes sent to frozen primaries: (SKU, the answer once resumed, whether it was ok).
        self.zombies: list[tuple[str, str, bool]] = []
        self.restock_rows = restock_rows
        self.skus = skus or []
        # Each restock file's totals per SKU-location, and the re-runs still going.
        self.restocks: list[tuple[str, Path, dict[tuple[str, str], int]]] = []
        self.reruns: list[subprocess.Popen[bytes]] = []
        # Files the service must refuse whole: one that breaks late (`--late-broken-restock`;
        # what it is, its job id, its run), and another file under a used job id once the load
        # is over (`--reused-job-id`).
        self.late_broken = late_broken_restock
        self.refused: list[tuple[str, str, subprocess.Popen[bytes]]] = []
        self.reused_job_id = reused_job_id
        self.actions: dict[str, Callable[[FaultRecord], Awaitable[None]]] = {
            SHARD_KILL: self._shard_kill,
            CRASH_AFTER_COMMIT: self._shard_hook(Fault.CRASH_AFTER_COMMIT),
            REPLICA_KILL: self._replica_kill,
            RESTOCK_DRIVER_KILL: self._restock_driver_kill,
            NODE_LOSS: self._node_loss,
            IO_ERROR: self._shard_hook(Fault.IO_ERROR),
            DISK_FULL: self._shard_hook(Fault.DISK_FULL),
            CLOCK_JUMP: self._shard_hook(Fault.CLOCK_JUMP),
            HOST_KILL_WIPE: self._host_kill_wipe,
            HOST_FREEZE: self._host_freeze,
            PRIMARY_KILL: self._primary_kill,
        }

    @property
    def hosts(self) -> ReplicatedCluster:
        if self.cluster.hosts is None:
            raise RuntimeError("host faults need a replicated cluster (--replicated)")
        return self.cluster.hosts

    async def run(self, stop: asyncio.Event, gap_seconds: tuple[float, float]) -> None:
        """Inject faults until `stop`, one at a time, `gap_seconds` (uniform) apart."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.rng.uniform(*gap_seconds))
            if stop.is_set():
                return
            await self.inject(self._next_kind())

    def _next_kind(self) -> str:
        replication = [kind for kind in self.kinds if kind in REPLICATION_KINDS]
        others = [kind for kind in self.kinds if kind not in REPLICATION_KINDS]
        if replication and others:
            self.replication_turn = not self.replication_turn
            if not self.replication_turn:
                return self._deal(self.replication_deck, replication)
            return self._deal(self.deck, others)
        return self._deal(self.deck, list(self.kinds))

    def _deal(self, deck: list[str], kinds: list[str]) -> str:
        if not deck:
            deck.extend(kinds)
            self.rng.shuffle(deck)
        return deck.pop()

    async def inject(self, kind: str) -> None:
        record = FaultRecord(self.now(), kind, "")
        self.history.faults.append(record)
        started = time.monotonic()
        try:
            await self.actions[kind](record)
        except Exception as error:
            record.detail += f" not injected: {error!r}"[:300]
            return
        if self.cluster.hosts is not None and kind != CLOCK_JUMP:
            # Every replica set whole again before the next fault: one host down at a time.
            try:
                await asyncio.to_thread(self.cluster.wait_whole, RECOVERY_TIMEOUT_SECONDS)
            except TimeoutError as error:
                record.detail += f" not recovered: {error}"[:600]
                return
            record.whole_at = round(self.now(), 3)
            record.recovered_seconds = round(time.monotonic() - started, 3)
            return
        if kind in (SHARD_KILL, CRASH_AFTER_COMMIT, NODE_LOSS, IO_ERROR, DISK_FULL):
            # Every shard back before the next fault: one fault at a time.
            try:
                await asyncio.to_thread(self.cluster.wait_shards_up, RECOVERY_TIMEOUT_SECONDS)
            except TimeoutError:
                record.detail += f" not recovered within {RECOVERY_TIMEOUT_SECONDS:g} s"
                return
            record.recovered_seconds = round(time.monotonic() - started, 3)
        if kind == NODE_LOSS:
            hosts = await asyncio.to_thread(self.cluster.shard_hosts)
            record.detail = "shards now on " + ", ".join(
                f"node {node.node_id[:8]}: {sorted(shards)}" for node, shards in hosts.items()
            )

    # -- shards -----------------------------------------------------------------------------

    def _live_shard(self) -> int:
        statuses = self.cluster.shard_statuses()
        live = [s.shard_id for s in statuses if s is not None and s.available]
        if not live:
            raise RuntimeError("no shard is up")
        return self.rng.choice(live)

    async def _shard_kill(self, record: FaultRecord) -> None:
        shard = await asyncio.to_thread(self._live_shard)
        status = self.cluster.shard_statuses()[shard]
        assert status is not None
        os.kill(status.pid, signal.SIGKILL)
        record.target = f"shard {shard} (pid {status.pid})"

    def _shard_hook(self, fault: Fault) -> Callable[[FaultRecord], Awaitable[None]]:
        async def inject(record: FaultRecord) -> None:
            shard = await asyncio.to_thread(self._live_shard)
            value: float = 1
            if fault is Fault.CLOCK_JUMP:
                value = self.rng.choice(CLOCK_JUMPS_SECONDS)
            elif fault is Fault.IO_ERROR:
                value = self.rng.randint(1, 3)
            record.target = f"shard {shard}"
            record.detail = f"{fault.value} {value:g}"
            try:
                await self.cluster.client.shards[shard].inject_fault.remote(fault.value, value)
            except (RayActorError, ActorUnavailableError):
                if fault is not Fault.CRASH_AFTER_COMMIT:
                    raise
                # It fired so soon that the shard died before its answer left.
                record.detail += " (the shard died before answering)"

        return inject

    async def _node_loss(self, record: FaultRecord) -> None:
        hosts = await asyncio.to_thread(self.cluster.shard_hosts)
        if not hosts:
            raise RuntimeError("no worker node hosts a shard")
        node = self.rng.choice(sorted(hosts, key=lambda n: n.node_id))
        record.target = f"node {node.node_id[:8]} with shards {sorted(hosts[node])}"
        # On the loop's thread, which is the main one (Ray's nodes install signal handlers);
        # clients wait meanwhile, a second or two.
        cluster = self.cluster.cluster
        cluster.remove_node(node, allow_graceful=False)
        # A replacement joins, as an autoscaler would add one: the cluster keeps its size.
        add_shard_host(cluster)

    # -- replica sets (replicated mode) -----------------------------------------------------

    def _pick_host(self, record: FaultRecord) -> str:
        """Mostly the host of some shard's primary; now and then one holding no primary."""
        hosts = self.hosts
        shards = range(self.cluster.client.partition.shard_count)
        sets = {shard: hosts.replica_set(shard) for shard in shards}
        primaries = {shard: hosts.primary_host(shard) for shard in shards}
        followers_only = sorted(set(hosts.nodes) - set(primaries.values()))
        # Each kind's first fault hits a primary's host: every run measures its failover.
        hit_primary = record.kind in self.primary_hosts_hit
        if followers_only and hit_primary and self.rng.random() < FOLLOWER_HOST_SHARE:
            host = self.rng.choice(followers_only)
        else:
            host = self.rng.choice(sorted(set(primaries.values())))
        record.primary_shards = sorted(s for s, h in primaries.items() if h == host)
        if record.primary_shards:
            self.primary_hosts_hit.add(record.kind)
        record.untouched_shards = sorted(
            s for s, found in sets.items() if host not in {m.host for m in found.members}
        )
        record.target = f"host {host} (primary of shards {record.primary_shards})"
        return host

    async def _host_kill_wipe(self, record: FaultRecord) -> None:
        """SIGKILL a host, wipe its disk, and add it back under its name a few seconds later."""
        host = await asyncio.to_thread(self._pick_host, record)
        record.at = self.now()
        await asyncio.to_thread(self.hosts.kill_host, host, True)
        down_seconds = self.rng.uniform(*HOST_DOWN_SECONDS)
        await asyncio.sleep(down_seconds)
        # On the loop's thread, which is the main one (Ray's nodes install signal handlers).
        self.hosts.add_host(host)
        record.detail = f"down {down_seconds:.1f} s, back on an empty disk"

    async def _host_freeze(self, record: FaultRecord) -> None:
        """SIGSTOP a host for a few seconds, then SIGCONT; a write sent to each frozen primary
        meanwhile must not be acknowledged once it resumes."""
        host = await asyncio.to_thread(self._pick_host, record)
        hosts = self.hosts
        old = {
            shard: ray.get_actor(hosts.replica_set(shard).primary, namespace=hosts.namespace)
            for shard in record.primary_shards
        }
        record.at = self.now()
        await asyncio.to_thread(hosts.freeze_host, host)
        zombies = {shard: self._zombie_write(shard, handle) for shard, handle in old.items()}
        frozen_seconds = self.rng.uniform(*HOST_FROZEN_SECONDS)
        try:
            await asyncio.sleep(frozen_seconds)
        finally:
            await asyncio.to_thread(hosts.thaw_host, host)
        record.detail = f"frozen {frozen_seconds:.1f} s"
        await asyncio.sleep(THAWED_CHECK_SECONDS)
        if not await asyncio.to_thread(self._node_alive, host):
            # Ray declared the frozen node dead (after about 6 s) and its raylet exits once it
            # runs again: the host is started again on its own disk, as its supervisor would.
            await asyncio.to_thread(hosts.kill_host, host, False)
            hosts.add_host(host)
            record.detail += ", declared dead by Ray: restarted on its disk"
        for sku, ref in zombies.values():
            try:
                answer = decode_outcomes(await asyncio.wait_for(ref, ZOMBIE_ANSWER_SECONDS))[0]
                said, ok = repr(answer.value)[:200], answer.ok
            except Exception as error:  # the actor died or never answered: nothing acknowledged
                said, ok = repr(error)[:200], False
            self.zombies.append((sku, said, ok))
            record.detail += f"; resumed primary answered {sku}: {said}"

    def _node_alive(self, host: str) -> bool:
        """Whether Ray still counts `host`'s node among the live ones."""
        node_id = self.hosts.nodes[host].node_id
        return any(n["NodeID"] == node_id and n["Alive"] for n in ray.nodes())  # type: ignore[no-untyped-call]

    def _zombie_write(self, shard: int, handle: Any) -> tuple[str, Any]:
        """A write of a SKU of `shard`'s own, sent straight to the frozen primary `handle`."""
        partition = self.cluster.client.partition
        sku = next(
            name
            for n in range(100_000)
            if partition.owner(sku=(name := f"ZOMBIE-{len(self.zombies)}-{shard}-{n}")) == shard
        )
        command = AdjustStock(sku, LOCATIONS[0], ZOMBIE_UNITS, "received")
        return sku, handle.execute.remote(encode_submissions([Submission(command)]))

    async def _primary_kill(self, record: FaultRecord) -> None:
        """SIGKILL the worker process of one shard's current primary."""
        hosts = self.hosts
        shard_count = self.cluster.client.partition.shard_count
        shard = self.rng.randrange(shard_count)
        replica_set = await asyncio.to_thread(hosts.replica_set, shard)
        handle: Any = ray.get_actor(replica_set.primary, namespace=hosts.namespace)
        status: Any = await asyncio.wait_for(handle.status.remote(), 10)
        pid = int(status.pid)
        record.at = self.now()
        os.kill(pid, signal.SIGKILL)
        record.primary_shards = [shard]
        record.untouched_shards = [s for s in range(shard_count) if s != shard]
        record.target = f"shard {shard} primary {replica_set.primary} (pid {pid})"

    # -- Serve ------------------------------------------------------------------------------

    async def _replica_kill(self, record: FaultRecord) -> None:
        replicas = await asyncio.to_thread(self.cluster.workers, REPLICA_TITLE)
        if not replicas:
            raise RuntimeError("no replica process found")
        victim = self.rng.choice(replicas)
        victim.kill()
        record.target = f"replica pid {victim.pid}"

    # -- restock jobs -----------------------------------------------------------------------

    async def _restock_driver_kill(self, record: FaultRecord) -> None:
        path = self.cluster.work_dir / f"restock-{len(self.restocks)}.csv"
        totals = self._restock_file(path)
        spec = job_spec(path, "delta", "csv", path.name)
        self.restocks.append((spec.job_id, path, totals))
        driver = self._restock_cli(path)
        jobs = jobs_actor(self.cluster.data_dir, self.cluster.namespace)
        # Killed at a random moment once the job has begun: before its first chunk, between
        # chunks or (rarely) after its last one.
        deadline = time.monotonic() + RESTOCK_BEGIN_TIMEOUT_SECONDS
        while time.monotonic() < deadline and driver.poll() is None:
            if await jobs.get.remote(spec.job_id) is not None:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(self.rng.uniform(0.0, 0.4))
        driver.send_signal(signal.SIGKILL)
        await asyncio.to_thread(driver.wait, 30)
        record.target = f"restock driver pid {driver.pid}, job {spec.job_id[:12]}"
        job = await jobs.get.remote(spec.job_id)
        applied = 0 if job is None else job.rows_applied
        record.detail = f"{applied} of {self.restock_rows} rows applied at the kill"
        # The operator runs the same file again: the job resumes and applies every row once.
        self.reruns.append(self._restock_cli(path))
        if self.late_broken and not self.refused:
            self.refused.append(self._late_broken_run())

    def _late_broken_run(self) -> tuple[str, str, subprocess.Popen[bytes]]:
        """A file whose first chunk is good and a later row does not parse, run as a job."""
        path = self.cluster.work_dir / "restock-late-break.csv"
        rows = LATE_BREAK_ROWS
        self._restock_file(path, rows)
        with path.open("a") as file:
            file.write(f"{self.skus[0]},{LOCATIONS[0]},1,restock,a-fifth-field\n")
        job_id = "chaos-late-break"
        what = f"a file that breaks after row {rows}"
        return what, job_id, self._restock_cli(path, "--job-id", job_id)

    def _restock_file(self, path: Path, rows: int = 0) -> dict[tuple[str, str], int]:
        rows = rows or self.restock_rows
        skus = [self.rng.choice(self.skus) for _ in range(rows)]
        locations = [self.rng.choice(LOCATIONS) for _ in range(rows)]
        table = pa.table(
            {"sku": skus, "location": locations, "quantity": pa.array([1] * rows, pa.int64())}
        )
        pa_csv.write_csv(table, path)
        totals: dict[tuple[str, str], int] = {}
        for level in zip(skus, locations, strict=True):
            totals[level] = totals.get(level, 0) + 1
        return totals

    def _restock_cli(self, path: Path, *extra: str) -> subprocess.Popen[bytes]:
        cluster = self.cluster
        command = restock_command(
            path, cluster.data_dir, cluster.namespace, cluster.cluster.address, *extra
        )
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def finish_restocks(self) -> list[dict[str, Any]]:
        """Wait for the re-runs; every job's final record, with the units it added per
        SKU-location: its file's, if every row was applied; none, if none was; unknown (None)
        if some were."""
        exits = [rerun.wait(RESTOCK_RUN_TIMEOUT_SECONDS) for rerun in self.reruns]
        jobs = jobs_actor(self.cluster.data_dir, self.cluster.namespace)
        found = []
        for index, (job_id, path, totals) in enumerate(self.restocks):
            job = ray.get(jobs.get.remote(job_id), timeout=30)
            # A re-run's driver can die too (a lost node takes the drivers attached to it):
            # the operator runs the file again, as the job's error says.
            extra_runs = 0
            while (job is None or job.status != "succeeded") and extra_runs < RESTOCK_RUNS_MAX:
                extra_runs += 1
                self._restock_cli(path).wait(RESTOCK_RUN_TIMEOUT_SECONDS)
                job = ray.get(jobs.get.remote(job_id), timeout=30)
            applied = None if job is None else job.rows_applied
            added = totals if applied == self.restock_rows else {} if applied == 0 else None
            found.append(
                {
                    "job_id": job_id,
                    "status": None if job is None else job.status,
                    "rows_total": self.restock_rows,
                    "rows_applied": applied,
                    "attempt": None if job is None else job.attempt,
                    "error": None if job is None else job.error,
                    "added": added,
                    "rerun_exit_code": exits[index] if index < len(exits) else None,
                    "extra_runs": extra_runs,
                }
            )
        return found + self._refusals()

    def _refusals(self) -> list[dict[str, Any]]:
        """The runs the service must refuse whole: the file that breaks late, and (once a job
        has succeeded) another file under that job's id. Each job keeps what it had."""
        jobs = jobs_actor(self.cluster.data_dir, self.cluster.namespace)
        runs = [(what, job_id, run, 0) for what, job_id, run in self.refused]
        if self.reused_job_id and self.restocks:
            job_id, path, _ = self.restocks[0]
            other = path.with_name("restock-reused-id.csv")
            self._restock_file(other, REUSED_ID_ROWS)
            run = self._restock_cli(other, "--job-id", job_id)
            runs.append(("another file under a used job id", job_id, run, self.restock_rows))
        found: list[dict[str, Any]] = []
        for what, job_id, run, kept in runs:
            exit_code = run.wait(RESTOCK_RUN_TIMEOUT_SECONDS)
            job = ray.get(jobs.get.remote(job_id), timeout=30)
            found.append(
                {
                    "job_id": job_id,
                    "expect": "refused",
                    "what": what,
                    "exit_code": exit_code,
                    "status": None if job is None else job.status,
                    "rows_applied": None if job is None else job.rows_applied,
                    "rows_kept": kept,
                    "added": {},
                }
            )
        return found
