"""An in-memory backend for fast unit tests of the shard core. Passes the same contract."""

import itertools
import uuid
from collections.abc import Iterator, Sequence

from persistence.port import ShardStore
from persistence.records import IdempotencyRecord, LogRecord, SnapshotInfo, StorageError


class MemoryShardStore(ShardStore):
    """Keeps everything in lists and dicts; survives a shard core restart, not a process one."""

    def __init__(self) -> None:
        self.log: list[LogRecord] = []
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self.snapshots: dict[int, tuple[int, int, bool, list[tuple[str, str]]]] = {}
        self._ids = itertools.count(1)
        self.epoch_starts: dict[int, int] = {}
        self.promised = 0
        self._disk_id = uuid.uuid4().hex
        self.failing_appends = 0
        self.closed = False

    def append(
        self, records: Sequence[LogRecord], idempotency: Sequence[IdempotencyRecord]
    ) -> None:
        if not records and not idempotency:
            return
        if self.failing_appends > 0:
            self.failing_appends -= 1
            raise StorageError("append failed: disk I/O error (injected)")
        self._check_lsns_follow(records, "append")
        keys = [r.key for r in idempotency]
        if len(set(keys)) != len(keys) or any(key in self.idempotency for key in keys):
            raise StorageError("append failed: UNIQUE constraint failed: idempotency.key")
        self.log.extend(records)
        self.idempotency.update((r.key, r) for r in idempotency)

    def _check_lsns_follow(self, records: Sequence[LogRecord], what: str) -> None:
        """Each LSN above the last one in the log, as SQLite's unique key checks."""
        last = self.log[-1].lsn if self.log else 0
        lsns = [r.lsn for r in records]
        if any(b <= a for a, b in itertools.pairwise([last, *lsns])):
            raise StorageError(f"{what} failed: UNIQUE constraint failed: log.lsn")

    def find_idempotency(self, keys: Sequence[str]) -> dict[str, IdempotencyRecord]:
        return {k: self.idempotency[k] for k in keys if k in self.idempotency}

    def last_lsn(self) -> int:
        if self.log:
            return self.log[-1].lsn
        snapshot = self.latest_snapshot()
        return 0 if snapshot is None else snapshot.start_lsn

    def read_log(self, after_lsn: int, limit: int) -> list[LogRecord]:
        return [r for r in self.log if r.lsn > after_lsn][:limit]

    def first_lsn(self) -> int:
        return self.log[0].lsn if self.log else self.last_lsn() + 1

    def prune_log(self, up_to_lsn: int, before_ms: int, limit: int) -> int:
        count = 0
        while count < limit and self.log:
            record = self.log[0]
            if record.lsn > up_to_lsn or record.at_ms >= before_ms:
                break
            del self.log[0]
            count += 1
        return count

    def begin_snapshot(self, start_lsn: int, at_ms: int) -> int:
        snapshot_id = next(self._ids)
        self.snapshots[snapshot_id] = (start_lsn, at_ms, False, [])
        return snapshot_id

    def add_snapshot_chunk(self, snapshot_id: int, kind: str, payload: str) -> None:
        self.snapshots[snapshot_id][3].append((kind, payload))

    def finish_snapshot(self, snapshot_id: int, keep: int) -> None:
        start_lsn, at_ms, _, chunks = self.snapshots[snapshot_id]
        self.snapshots[snapshot_id] = (start_lsn, at_ms, True, chunks)
        complete = sorted(i for i, s in self.snapshots.items() if s[2])
        doomed = complete[: -max(keep, 1)]
        doomed += [i for i, s in self.snapshots.items() if not s[2] and i < snapshot_id]
        for old in doomed:
            del self.snapshots[old]

    def latest_snapshot(self) -> SnapshotInfo | None:
        complete = [i for i, s in self.snapshots.items() if s[2]]
        if not complete:
            return None
        newest = max(complete)
        start_lsn, at_ms, _, _ = self.snapshots[newest]
        return SnapshotInfo(newest, start_lsn, at_ms)

    def read_snapshot_chunks(self, snapshot_id: int) -> Iterator[tuple[str, str]]:
        snapshot = self.snapshots.get(snapshot_id)
        yield from [] if snapshot is None else list(snapshot[3])

    def prune_idempotency(self, before_ms: int, limit: int) -> int:
        limit = max(limit, 0)
        doomed = sorted((r.at_ms, k) for k, r in self.idempotency.items() if r.at_ms < before_ms)
        for _, key in doomed[:limit]:
            del self.idempotency[key]
        return min(len(doomed), limit)

    def close(self) -> None:
        self.closed = True

    def disk_id(self) -> str:
        return self._disk_id

    def promised_epoch(self) -> int:
        return self.promised

    def promise_epoch(self, epoch: int) -> None:
        self.promised = max(self.promised, epoch)

    def epochs(self) -> list[tuple[int, int]]:
        return sorted(self.epoch_starts.items(), key=lambda entry: (entry[1], entry[0]))

    def add_epoch(self, epoch: int, start_lsn: int) -> None:
        self.epoch_starts.setdefault(epoch, start_lsn)

    def put_idempotency(self, records: Sequence[IdempotencyRecord]) -> None:
        self.idempotency.update((r.key, r) for r in records)

    def read_idempotency_since(
        self, at_ms: int, after_key: str, limit: int
    ) -> list[IdempotencyRecord]:
        keys = sorted(k for k, r in self.idempotency.items() if k > after_key and r.at_ms >= at_ms)
        return [self.idempotency[k] for k in keys[: max(limit, 0)]]

    def append_copied(
        self, records: Sequence[LogRecord], idempotency: Sequence[IdempotencyRecord] = ()
    ) -> None:
        if not records and not idempotency:
            return
        if self.failing_appends > 0:
            self.failing_appends -= 1
            raise StorageError("append_copied failed: disk I/O error (injected)")
        self._check_lsns_follow(records, "append_copied")
        self.log.extend(records)
        self.idempotency.update((r.key, r) for r in idempotency)

    def install_snapshot(
        self, start_lsn: int, at_ms: int, chunks: Sequence[tuple[str, str]]
    ) -> None:
        if self.log:
            raise StorageError("install_snapshot failed: the log is not empty")
        self.snapshots = {next(self._ids): (start_lsn, at_ms, True, list(chunks))}

    def wipe(self) -> None:
        self._disk_id = uuid.uuid4().hex
        self.log.clear()
        self.idempotency.clear()
        self.snapshots.clear()
        self.epoch_starts.clear()
