"""Starting the replica sets of a replicated data directory: each shard's replicas on distinct
hosts, each with a file on its host's own disk, the first replica set of each shard in etcd,
and the handles of the current primaries for a client."""

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, overload

import ray

from inventory_actors.cluster.shard_actor import ShardActor
from inventory_actors.replication.config import ReplicationConfig, host_resource
from inventory_actors.replication.directory import PrimaryDirectory
from inventory_actors.replication.epoch_store import EpochStore
from inventory_actors.replication.membership import Member, ReplicaSet, replica_name
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.partitioning import PartitionMap

REPLICATION_FILE = "replication.json"
# How long a new cluster may take to name its first primaries.
FIRST_PRIMARIES_SECONDS = 60.0
# The share of a host's marker resource one replica takes: a host holds many replicas.
_HOST_SHARE = 0.001


def save_replication(data_dir: Path, config: ReplicationConfig) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    fields = asdict(config)
    fields["hosts"] = list(config.hosts)
    (data_dir / REPLICATION_FILE).write_text(json.dumps(fields, indent=2) + "\n")


def load_replication(data_dir: Path) -> ReplicationConfig | None:
    """The data directory's replication settings; None for an unreplicated one."""
    path = data_dir / REPLICATION_FILE
    if not path.exists():
        return None
    fields = json.loads(path.read_text())
    fields["hosts"] = tuple(fields["hosts"])
    return ReplicationConfig(**fields)


def replica_hosts(config: ReplicationConfig, shard_id: int) -> list[str]:
    """The hosts of a shard's replicas: consecutive hosts from the shard's own offset, so
    primaries and followers spread over every host."""
    hosts = config.hosts
    return [hosts[(shard_id + index) % len(hosts)] for index in range(config.replicas)]


def replica_path(config: ReplicationConfig, host: str, shard_id: int) -> Path:
    return Path(config.data_root) / host / f"shard-{shard_id:04d}.sqlite3"


def start_replica(
    config: ReplicationConfig,
    shard_id: int,
    index: int,
    host: str,
    shard_config: ShardConfig,
    namespace: str,
    partition: PartitionMap,
) -> Any:
    """Create (or find) one replica actor, held to its host: a replica whose host is lost
    waits for that host to come back (with a new disk, it copies the log before it votes)."""
    return ShardActor.options(  # type: ignore[attr-defined]
        name=replica_name(shard_id, index),
        namespace=namespace,
        lifetime="detached",
        get_if_exists=True,
        resources={host_resource(host): _HOST_SHARE},
    ).remote(
        shard_id,
        str(replica_path(config, host, shard_id)),
        shard_config,
        namespace,
        partition,
        (replica_name(shard_id, index), config),
    )


def start_replica_sets(
    config: ReplicationConfig,
    partition: PartitionMap,
    shard_config: ShardConfig,
    namespace: str,
) -> tuple[PrimaryDirectory, list[Any]]:
    """Every replica of every shard, the first replica sets in etcd (replica 0 the first
    primary), and a directory of primaries once each shard serves."""
    epochs = EpochStore(config.etcd_url, config.cluster)
    replicas: list[Any] = []
    for shard_id in range(partition.shard_count):
        hosts = replica_hosts(config, shard_id)
        handles = [
            start_replica(config, shard_id, index, host, shard_config, namespace, partition)
            for index, host in enumerate(hosts)
        ]
        replicas += handles
        if epochs.read(shard_id) is None:
            states = ray.get([h.replica_state.remote() for h in handles], timeout=120)
            members = tuple(
                Member(replica_name(shard_id, index), host, state.disk_id)
                for index, (host, state) in enumerate(zip(hosts, states, strict=True))
            )
            if epochs.create(shard_id, ReplicaSet(1, members[0].name, members)):
                handles[0].campaign.remote()
    directory = PrimaryDirectory(config, namespace)
    directory.wait_for_primaries(partition.shard_count, FIRST_PRIMARIES_SECONDS)
    return directory, replicas


class PrimaryHandles(Sequence[Any]):
    """The current primary of each shard, looked up at each use."""

    def __init__(self, directory: PrimaryDirectory, shard_count: int) -> None:
        self.directory, self._count = directory, shard_count

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(self._count)[index]]
        if not 0 <= index < self._count:
            raise IndexError(index)
        handle = self.directory.handle(index)
        if handle is None:
            raise ShardUnavailable(index, "the shard has no primary yet")
        return handle

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(self._count))
