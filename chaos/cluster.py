"""A private Ray cluster of several nodes on this machine (`ray.cluster_utils.Cluster`): a head
node with Serve and the HTTP app, and worker nodes that host the shards. Losing a worker node
is one of the faults: its shards come back on another node, from the data directory.

Replicated (`--replicated`): a local etcd and shard hosts h1..h4, each a node with a data
directory of its own (`harness.replicated`); every shard is a replica set of 3 on 3 distinct
hosts, and Serve, its proxy and the HTTP app stay on the head, so a host fault touches shards
only."""

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psutil
import ray
from ray import serve
from ray.cluster_utils import Cluster

from harness.ports import free_port
from harness.replicated import ReplicatedCluster
from harness.serve import private_serve_files, wait_ready
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.protocol import ShardStatus
from inventory_cli.main import FAST_INGRESS_ENV
from serve_app.deployment import APP_NAME, deploy, deployment_for
from serve_app.keys import KeyStore
from serve_app.middleware.rate_limit import RateLimits
from serve_app.service import Settings

SHARD_HOST = "shard_host"
# A node that stops answering is declared dead after about 3 s (instead of 30 s), so its
# shards restart elsewhere soon.
FAST_NODE_DEATH = {"health_check_period_ms": 1_000, "health_check_failure_threshold": 3}
REPLICA_TITLE = f"ray::ServeReplica:{APP_NAME}:"
# Replicated mode: shard hosts, replicas per shard, and the head's marker resource, which holds
# the Serve replicas there (a frozen or killed host must not take an HTTP replica with it).
REPLICATED_HOSTS = 4
REPLICATION_FACTOR = 3
HEAD_RESOURCE = "chaos_head"
SERVE_REPLICA_CPUS = 0.25


def shard_config(feed_retention_seconds: float = 0.0) -> ShardConfig:
    """The run's shards; with a feed retention, they prune their logs during the run (a record
    goes once it is that old and a newer snapshot has begun, so snapshots come often too)."""
    config = ShardConfig(
        allow_fault_injection=True,
        expiry_interval_seconds=0.1,
        settle_retry_seconds=0.3,
        # Snapshots during the run, so recovery after a kill often starts from one.
        snapshot_every_records=20_000,
        snapshot_every_seconds=30.0,
    )
    if not feed_retention_seconds:
        return config
    return replace(
        config,
        event_retention_seconds=feed_retention_seconds,
        housekeeping_interval_seconds=max(feed_retention_seconds / 4, 1.0),
        snapshot_every_seconds=max(feed_retention_seconds / 2, 1.0),
    )


@dataclass
class ChaosCluster:
    cluster: Cluster
    temp_dirs: list[Path]
    data_dir: Path
    namespace: str
    url: str
    key: str
    client: InventoryClient
    # Replicated mode only: the etcd, the hosts and their replica sets.
    hosts: ReplicatedCluster | None = None

    @classmethod
    def start(
        cls,
        shards: int,
        shard_hosts: int,
        replicas: int,
        feed_retention_seconds: float = 0.0,
        replicated: bool = False,
    ) -> "ChaosCluster":
        if replicated:
            return cls.start_replicated(shards, replicas, feed_retention_seconds)
        haproxy = private_serve_files()
        # Short: Ray's socket paths must stay under about 100 characters.
        ray_temp = Path(tempfile.mkdtemp(prefix="rc"))
        # Ray records "the current cluster" under RAY_TMPDIR: keep a running service's record
        # (`make run`, which `inventory status` finds) from pointing at this one.
        os.environ["RAY_TMPDIR"] = str(ray_temp)
        (ray_temp / "ray").mkdir()
        work = Path(tempfile.mkdtemp(prefix="chaos-"))
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "include_dashboard": False,
                "temp_dir": str(ray_temp / "ray"),
                "_system_config": FAST_NODE_DEATH,
            },
        )
        for _ in range(shard_hosts):
            add_shard_host(cluster)
        namespace = f"chaos-{uuid.uuid4().hex[:8]}"
        ray.init(address=cluster.address, namespace=namespace, log_to_driver=False)
        data_dir = work / "data"
        data_dir.mkdir()
        first = KeyStore.open(data_dir).initialize()
        assert first is not None
        client = InventoryClient.connect(
            data_dir,
            shard_count=shards,
            namespace=namespace,
            config=shard_config(feed_retention_seconds),
            call_timeout_seconds=10.0,
            # Placed by the shard-host resource alone: a killed shard's restart must never
            # wait for CPU that a restock task or a replica took on its node meanwhile.
            actor_options={
                "resources": {SHARD_HOST: 1},
                "num_cpus": 0,
                "scheduling_strategy": "SPREAD",
            },
        )
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = Settings(
            data_dir=str(data_dir),
            shards=shards,
            namespace=namespace,
            # The limiter has its own tests; here it would only turn load into 429s.
            rate_limits=RateLimits.disabled(),
        )
        deploy(settings, num_replicas=replicas)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        return cls(cluster, [haproxy, ray_temp, work], data_dir, namespace, url, first[1], client)

    @classmethod
    def start_replicated(
        cls, shards: int, replicas: int, feed_retention_seconds: float = 0.0
    ) -> "ChaosCluster":
        """A local etcd, a head with Serve and hosts h1..h4 holding 3 replicas of each shard."""
        haproxy = private_serve_files()
        hosts = ReplicatedCluster.start(
            shards,
            REPLICATED_HOSTS,
            REPLICATION_FACTOR,
            shard_config(feed_retention_seconds),
            head_resources={HEAD_RESOURCE: 100},
        )
        data_dir, namespace, client = hosts.data_dir, hosts.namespace, hosts.client
        first = KeyStore.open(data_dir).initialize()
        assert first is not None
        port = free_port()
        serve.start(proxy_location="HeadOnly", http_options={"host": "127.0.0.1", "port": port})
        settings = Settings(
            data_dir=str(data_dir),
            shards=shards,
            namespace=namespace,
            rate_limits=RateLimits.disabled(),
        )
        deploy_on_head(settings, replicas)
        url = f"http://127.0.0.1:{port}"
        wait_ready(url)
        temp_dirs = [haproxy, hosts.ray_temp, hosts.work]
        return cls(hosts.cluster, temp_dirs, data_dir, namespace, url, first[1], client, hosts)

    @property
    def work_dir(self) -> Path:
        return self.temp_dirs[-1]

    def keep_logs(self, out: Path) -> None:
        """Copy the Ray session's logs (every shard replica's among them) to `out/ray-logs`."""
        logs = self.temp_dirs[1] / "ray" / "session_latest" / "logs"
        with contextlib.suppress(OSError):
            shutil.copytree(logs, out / "ray-logs", dirs_exist_ok=True)

    def shutdown(self) -> None:
        if self.hosts is not None:
            for host in list(self.hosts.nodes):
                with contextlib.suppress(Exception):
                    self.hosts.thaw_host(host)
        with contextlib.suppress(Exception):
            serve.shutdown()  # type: ignore[no-untyped-call]
        ray.shutdown()
        self.cluster.shutdown()  # type: ignore[no-untyped-call]
        if self.hosts is not None:
            self.hosts.etcd.stop()
        for path in self.temp_dirs:
            shutil.rmtree(path, ignore_errors=True)

    # -- processes --------------------------------------------------------------------------

    def raylets(self) -> dict[int, Any]:
        """Each live node of the cluster by its raylet's pid."""
        found = {}
        for node in self.cluster.list_all_nodes():  # type: ignore[no-untyped-call]
            for info in node.all_processes.get("raylet", []):
                found[info.process.pid] = node
        return found

    def workers(self, title: str) -> list[psutil.Process]:
        """This cluster's worker processes whose title starts with `title`."""
        found = []
        for pid in self.raylets():
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(pid).children():
                    with contextlib.suppress(psutil.Error):
                        if " ".join(child.cmdline()).startswith(title):
                            found.append(child)
        return found

    def shard_statuses(self) -> list[ShardStatus | None]:
        return [s if isinstance(s, ShardStatus) else None for s in self.client.status()]

    def shard_hosts(self) -> dict[Any, list[int]]:
        """Worker nodes that host shards now, with the shards' ids."""
        nodes = self.raylets()
        hosts: dict[Any, list[int]] = {}
        for status in self.shard_statuses():
            if status is None:
                continue
            with contextlib.suppress(psutil.Error):
                node = nodes.get(psutil.Process(status.pid).ppid())
                if node is not None and node is not self.cluster.head_node:
                    hosts.setdefault(node, []).append(status.shard_id)
        return hosts

    def wait_shards_up(self, timeout_seconds: float, settled: bool = False) -> float:
        """Seconds until every shard is available and, if `settled`, every reservation across
        shards is decided everywhere (raises at the deadline)."""
        started = time.monotonic()
        last: list[str] = []
        while time.monotonic() - started < timeout_seconds:
            with contextlib.suppress(Exception):
                statuses = self.client.status()
                last = [_state_of(s) for s in statuses]
                if all(
                    isinstance(s, ShardStatus)
                    and s.available
                    and not (settled and s.unsettled_reservations)
                    for s in statuses
                ) and (self.hosts is None or self.primaries_serve()):
                    return time.monotonic() - started
            time.sleep(0.1)
        what = "settled" if settled else "up"
        if self.hosts is not None and not last:
            last = ["no primary answers"]
        # What each shard last said, so that a run that fails here says why.
        states = "; ".join(f"shard {n}: {state}" for n, state in enumerate(last))
        raise TimeoutError(f"shards not all {what} after {timeout_seconds} s ({states})")

    # -- replica sets (replicated mode) -----------------------------------------------------

    def replica_roles(self) -> list[list[tuple[str, str, str, str]]]:
        """Per shard, each member in etcd as (name, its disk in etcd, the disk its replica
        answers with, its role); a replica that does not answer within 2 s has disk and role ""."""
        hosts = self.hosts
        assert hosts is not None
        found = []
        for shard_id in range(self.client.partition.shard_count):
            replica_set = hosts.replica_set(shard_id)
            refs: list[Any] = [
                ray.get_actor(m.name, namespace=self.namespace).replica_role.remote()
                for m in replica_set.members
            ]
            members = []
            for member, ref in zip(replica_set.members, refs, strict=True):
                role, disk_id = "", ""
                with contextlib.suppress(Exception):
                    answer: Any = ray.get(ref, timeout=2)
                    role, disk_id = answer[0], answer[1].disk_id
                members.append((member.name, member.disk_id, disk_id, role))
            found.append(members)
        return found

    def replica_sets_whole(self) -> bool:
        """Every member of every shard answers with the disk etcd lets it vote with, and each
        shard's primary serves."""
        roles = self.replica_roles()
        whole = all(answered == listed for shard in roles for _, listed, answered, _ in shard)
        return whole and self.primaries_serve()

    def primaries_serve(self) -> bool:
        """Each shard's primary in etcd answers as the primary of that epoch."""
        hosts = self.hosts
        assert hosts is not None
        for shard_id in range(self.client.partition.shard_count):
            replica_set = hosts.replica_set(shard_id)
            handle: Any = ray.get_actor(replica_set.primary, namespace=self.namespace)
            answer: Any = ray.get(handle.replica_role.remote(), timeout=2)
            if answer[0] != "primary" or answer[1].promised_epoch != replica_set.epoch:
                return False
        return True

    def wait_whole(self, timeout_seconds: float) -> float:
        """Seconds until every replica set is whole (raises TimeoutError at the deadline)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_seconds:
            with contextlib.suppress(Exception):
                if self.replica_sets_whole():
                    return time.monotonic() - started
            time.sleep(0.1)
        roles: object = "unreadable"
        with contextlib.suppress(Exception):
            roles = self.replica_roles()
        raise TimeoutError(f"replica sets not whole after {timeout_seconds} s: {roles}")

    def replica_files(self) -> list[Path]:
        """Every shard replica's file on the hosts' disks."""
        hosts = self.hosts
        assert hosts is not None
        return sorted(Path(hosts.config.data_root).glob("*/shard-*.sqlite3"))


def _state_of(status: ShardStatus | ShardUnavailable) -> str:
    if isinstance(status, ShardUnavailable):
        return f"unavailable: {status.detail}"
    state = "up" if status.available else "recovering"
    return f"{state}, lsn {status.last_lsn}, {status.unsettled_reservations} unsettled"


def deploy_on_head(settings: Settings, replicas: int) -> None:
    """The HTTP app with `replicas` fixed replicas, each held to the head node."""
    deployment = deployment_for(
        settings,
        num_replicas=replicas,
        autoscaling_config=None,
        ray_actor_options={"num_cpus": SERVE_REPLICA_CPUS, "resources": {HEAD_RESOURCE: 1}},
    )
    serve.run(deployment.bind(settings), name=APP_NAME, route_prefix="/", blocking=False)


def add_shard_host(cluster: Cluster) -> Any:
    return cluster.add_node(num_cpus=1, resources={SHARD_HOST: 100})


def environment_for_chaos() -> None:
    """Serve's fast ingress, as in production; set before Ray starts."""
    for variable, value in FAST_INGRESS_ENV.items():
        os.environ.setdefault(variable, value)
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
