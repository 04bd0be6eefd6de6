"""A private replicated cluster on this machine: a local etcd, a Ray head and several host
nodes (`ray.cluster_utils.Cluster`), each host with a data directory of its own, and the
replica sets of every shard on them. Hosts can be killed (with their disk wiped), added back,
frozen with SIGSTOP and resumed. Shared by the replication tests, the chaos suite and the
failover benchmark."""

import contextlib
import os
import shutil
import signal
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import ray
from ray.cluster_utils import Cluster

from harness.etcd import LocalEtcd
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.cluster.replica_sets import save_replication
from inventory_actors.replication.config import ReplicationConfig, host_resource
from inventory_actors.replication.epoch_store import EpochStore
from inventory_actors.replication.membership import ReplicaSet
from inventory_actors.shard.config import ShardConfig

# Nodes are declared dead after about 3 s when killed and about 6 s when frozen (Ray's default
# timeout makes that about 34 s); replication does not wait for either.
NODE_DEATH = {
    "health_check_period_ms": 1_000,
    "health_check_failure_threshold": 3,
    "health_check_timeout_ms": 1_000,
}


def private_ray_temp() -> Path:
    """A Ray temp directory of this cluster's own. Ray records "the current cluster" under
    RAY_TMPDIR: a running service's record (`make run`) must not point at this one. Short:
    Ray's socket paths must stay under about 100 characters."""
    ray_temp = Path(tempfile.mkdtemp(prefix="rr"))
    os.environ["RAY_TMPDIR"] = str(ray_temp)
    (ray_temp / "ray").mkdir()
    return ray_temp


@dataclass
class ReplicatedCluster:
    cluster: Cluster
    etcd: LocalEtcd
    work: Path
    ray_temp: Path
    config: ReplicationConfig
    namespace: str
    client: InventoryClient
    nodes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(
        cls,
        shards: int = 2,
        hosts: int = 4,
        replicas: int = 3,
        shard_config: ShardConfig | None = None,
        head_resources: dict[str, float] | None = None,
    ) -> "ReplicatedCluster":
        """A new cluster, its replica sets serving; `head_resources` are the head node's custom
        resources (what pins other work to it)."""
        ray_temp = private_ray_temp()
        work = Path(tempfile.mkdtemp(prefix="replicated-"))
        etcd = LocalEtcd.start(work / "etcd")
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "resources": head_resources or {},
                "include_dashboard": False,
                "temp_dir": str(ray_temp / "ray"),
                "_system_config": NODE_DEATH,
            },
        )
        names = tuple(f"h{index}" for index in range(1, hosts + 1))
        config = ReplicationConfig(
            etcd_url=etcd.url,
            cluster=f"c-{uuid.uuid4().hex[:8]}",
            hosts=names,
            data_root=str(work / "hosts"),
            replicas=replicas,
        )
        namespace = f"replicated-{uuid.uuid4().hex[:8]}"
        started = cls(cluster, etcd, work, ray_temp, config, namespace, None)  # type: ignore[arg-type]
        for name in names:
            started.add_host(name)
        ray.init(address=cluster.address, namespace=namespace, log_to_driver=False)
        save_replication(started.data_dir, config)
        started.client = InventoryClient.connect(
            started.data_dir,
            shard_count=shards,
            namespace=namespace,
            config=shard_config or ShardConfig(),
            call_timeout_seconds=10.0,
        )
        return started

    @property
    def data_dir(self) -> Path:
        return self.work / "data"

    def host_dir(self, host: str) -> Path:
        return Path(self.config.data_root) / host

    # -- hosts --------------------------------------------------------------------------------

    def add_host(self, host: str) -> None:
        self.host_dir(host).mkdir(parents=True, exist_ok=True)
        self.nodes[host] = self.cluster.add_node(num_cpus=1, resources={host_resource(host): 1})

    def kill_host(self, host: str, wipe_disk: bool = False) -> None:
        """SIGKILL the host's raylet and every worker on it; with `wipe_disk`, its data too."""
        node = self.nodes.pop(host)
        for process in self._processes(node):
            with contextlib.suppress(psutil.Error):
                process.kill()
        with contextlib.suppress(Exception):
            self.cluster.remove_node(node, allow_graceful=False)
        if wipe_disk:
            shutil.rmtree(self.host_dir(host), ignore_errors=True)

    def freeze_host(self, host: str) -> None:
        for process in self._processes(self.nodes[host]):
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGSTOP)

    def thaw_host(self, host: str) -> None:
        for process in self._processes(self.nodes[host]):
            with contextlib.suppress(psutil.Error):
                process.send_signal(signal.SIGCONT)

    def _processes(self, node: Any) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        for info in node.all_processes.get("raylet", []):
            with contextlib.suppress(psutil.Error):
                raylet = psutil.Process(info.process.pid)
                found += raylet.children(recursive=True)
                found.append(raylet)
        return found

    # -- replica sets -------------------------------------------------------------------------

    def replica_set(self, shard_id: int) -> ReplicaSet:
        found = EpochStore(self.config.etcd_url, self.config.cluster).read(shard_id)
        assert found is not None
        return found[0]

    def primary_host(self, shard_id: int) -> str:
        replica_set = self.replica_set(shard_id)
        member = replica_set.member(replica_set.primary)
        assert member is not None
        return member.host

    def wait_for(self, condition: Any, timeout_seconds: float, what: str) -> Any:
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                value = condition()
                if value:
                    return value
            time.sleep(0.02)
        raise TimeoutError(f"{what} after {timeout_seconds} s")

    def shutdown(self) -> None:
        for host in list(self.nodes):
            with contextlib.suppress(Exception):
                self.thaw_host(host)
        ray.shutdown()
        with contextlib.suppress(Exception):
            self.cluster.shutdown()  # type: ignore[no-untyped-call]
        self.etcd.stop()
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.ray_temp, ignore_errors=True)
