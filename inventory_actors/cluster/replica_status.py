"""Every replica of every replicated shard as `inventory status` shows it: where it runs, its
role, epoch and LSN, how far it lags behind its primary, its file, and whether it votes."""

from typing import Any

import ray
from ray.exceptions import RayError

from inventory_actors.cluster.replica_sets import PrimaryHandles

STATUS_TIMEOUT_SECONDS = 5.0


def replica_status(handles: PrimaryHandles) -> list[dict[str, Any]]:
    """One entry per shard: its epoch, primary and replicas (unreachable ones say so)."""
    directory = handles.directory
    directory.refresh()
    shards = []
    for shard_id in range(len(handles)):
        replica_set = directory.replica_set(shard_id)
        if replica_set is None:
            shards.append({"shard": shard_id, "replicas": [], "state": "no replica set"})
            continue
        refs = {
            m.name: directory.handle_of(m.name).replica_status.remote() for m in replica_set.members
        }
        replicas = []
        for member in replica_set.members:
            try:
                found: dict[str, Any] = ray.get(refs[member.name], timeout=STATUS_TIMEOUT_SECONDS)
            except (RayError, ValueError) as error:
                found = {"name": member.name, "role": "unreachable", "error": type(error).__name__}
            found["host"] = member.host
            found["votes"] = bool(member.disk_id) and found.get("disk_id") == member.disk_id
            replicas.append(found)
        primary_lsn = next(
            (r["lsn"] for r in replicas if r["name"] == replica_set.primary and "lsn" in r), None
        )
        for found in replicas:
            if primary_lsn is not None and "lsn" in found:
                found["lag"] = primary_lsn - found["lsn"]
        shards.append(
            {
                "shard": shard_id,
                "epoch": replica_set.epoch,
                "primary": replica_set.primary,
                "replicas": replicas,
            }
        )
    return shards
