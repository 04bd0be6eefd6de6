"""Where each replicated shard's primary is: etcd's replica sets, read every
`REFRESH_SECONDS` by a background thread, and the Ray handles of the named replicas."""

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ray

from inventory_actors.replication.config import ReplicationConfig
from inventory_actors.replication.epoch_store import EpochStore
from inventory_actors.replication.membership import ReplicaSet

log = logging.getLogger(__name__)

REFRESH_SECONDS = 0.2
# Shards reach other shards' primaries only to settle carts: they look less often.
PEER_REFRESH_SECONDS = 1.0


class PrimaryDirectory:
    """The primaries of a replicated cluster, as etcd names them."""

    def __init__(
        self, config: ReplicationConfig, namespace: str, refresh_seconds: float = REFRESH_SECONDS
    ) -> None:
        self._refresh_seconds = refresh_seconds
        self._epochs = EpochStore(config.etcd_url, config.cluster)
        self._namespace = namespace
        self._sets: dict[int, ReplicaSet] = {}
        self._handles: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="primary-directory", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stopped.is_set():
            self.refresh()
            self._stopped.wait(self._refresh_seconds)

    def refresh(self) -> None:
        try:
            found = self._epochs.read_all()
        except Exception as error:  # etcd down: keep what is known
            log.warning("primary directory: etcd unreadable: %r", error)
            return
        with self._lock:
            self._sets = found

    def replica_set(self, shard_id: int) -> ReplicaSet | None:
        with self._lock:
            found = self._sets.get(shard_id)
        if found is None:
            self.refresh()
            with self._lock:
                found = self._sets.get(shard_id)
        return found

    def epoch(self, shard_id: int) -> int:
        found = self.replica_set(shard_id)
        return 0 if found is None else found.epoch

    def replaced(self, shard_id: int) -> Callable[[], bool]:
        """A check, for a call made now to the shard's primary, that says whether etcd has
        named another primary since."""
        epoch = self.epoch(shard_id)
        return lambda: self.epoch(shard_id) != epoch

    def handle(self, shard_id: int) -> Any:
        """The primary's actor handle, or None when the shard has none yet."""
        found = self.replica_set(shard_id)
        if found is None or not found.primary:
            return None
        return self.handle_of(found.primary)

    def handle_of(self, name: str) -> Any:
        handle = self._handles.get(name)
        if handle is None:
            handle = ray.get_actor(name, namespace=self._namespace)
            self._handles[name] = handle
        return handle

    def wait_for_primaries(self, shard_count: int, timeout_seconds: float) -> None:
        """Return once every shard has a primary that answers, or raise TimeoutError."""
        deadline = time.monotonic() + timeout_seconds
        for shard_id in range(shard_count):
            while True:
                self.refresh()
                found = self.replica_set(shard_id)
                if found is not None and found.primary:
                    role = ray.get(self.handle_of(found.primary).replica_role.remote(), timeout=10)
                    if role[0] == "primary" and role[1].promised_epoch == found.epoch:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"shard {shard_id} has no primary")
                time.sleep(0.05)

    def close(self) -> None:
        self._stopped.set()
