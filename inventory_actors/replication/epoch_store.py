"""The epoch authority: each shard's `ReplicaSet` in etcd, changed only by compare-and-swap.

Every call is a blocking HTTP request of a few milliseconds; async callers use `asyncio.to_thread`.
"""

from urllib.parse import urlsplit

from etcd3gw.client import Etcd3Client

from inventory_actors.replication.membership import ReplicaSet

REQUEST_TIMEOUT_SECONDS = 2.0


class EpochStore:
    """The replica sets of one cluster (`cluster` names it inside a shared etcd)."""

    def __init__(self, url: str, cluster: str) -> None:
        parts = urlsplit(url)
        self.url, self.cluster = url, cluster
        self._client = Etcd3Client(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 2379,
            protocol=parts.scheme or "http",
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        self._prefix = f"/inventory/{cluster}/shards/"

    def _key(self, shard_id: int) -> str:
        return f"{self._prefix}{shard_id}"

    def read(self, shard_id: int) -> tuple[ReplicaSet, str] | None:
        """The shard's replica set and the exact text stored (what `swap` compares)."""
        values = self._client.get(self._key(shard_id))
        if not values:
            return None
        text = values[0].decode() if isinstance(values[0], bytes) else str(values[0])
        return ReplicaSet.from_json(text), text

    def read_all(self) -> dict[int, ReplicaSet]:
        found: dict[int, ReplicaSet] = {}
        for value, meta in self._client.get_prefix(self._prefix):
            key = meta["key"].decode() if isinstance(meta["key"], bytes) else str(meta["key"])
            text = value.decode() if isinstance(value, bytes) else str(value)
            found[int(key.rsplit("/", 1)[1])] = ReplicaSet.from_json(text)
        return found

    def create(self, shard_id: int, replica_set: ReplicaSet) -> bool:
        """Store the shard's first replica set; False if it has one."""
        return bool(self._client.create(self._key(shard_id), replica_set.to_json()))

    def swap(self, shard_id: int, expected_text: str, replica_set: ReplicaSet) -> bool:
        """Replace the stored replica set if it is still `expected_text`."""
        return bool(self._client.replace(self._key(shard_id), expected_text, replica_set.to_json()))
