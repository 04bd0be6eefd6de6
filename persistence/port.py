"""The storage port of one shard. Every backend passes the same contract test."""

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

from persistence.records import IdempotencyRecord, LogRecord, SnapshotInfo


class ShardStore(ABC):
    """The durable log, idempotency records and snapshots of one shard."""

    @abstractmethod
    def append(
        self, records: Sequence[LogRecord], idempotency: Sequence[IdempotencyRecord]
    ) -> None:
        """Write all of it in one transaction, durable on return, or raise StorageError and
        write none of it."""

    @abstractmethod
    def find_idempotency(self, keys: Sequence[str]) -> dict[str, IdempotencyRecord]:
        """The stored records of those keys that have one."""

    @abstractmethod
    def last_lsn(self) -> int:
        """The highest LSN in the log, or the snapshot's start when the log is empty; 0 if new."""

    @abstractmethod
    def read_log(self, after_lsn: int, limit: int) -> list[LogRecord]:
        """Up to `limit` records with LSN > `after_lsn`, oldest first."""

    @abstractmethod
    def begin_snapshot(self, start_lsn: int, at_ms: int) -> int:
        """Start a snapshot whose state includes at least every record up to `start_lsn`."""

    @abstractmethod
    def add_snapshot_chunk(self, snapshot_id: int, kind: str, payload: str) -> None:
        """Add one durable chunk of rows to an unfinished snapshot."""

    @abstractmethod
    def finish_snapshot(self, snapshot_id: int, keep: int) -> None:
        """Mark a snapshot complete; drop all but the newest `keep` complete ones."""

    @abstractmethod
    def latest_snapshot(self) -> SnapshotInfo | None:
        """The newest complete snapshot."""

    @abstractmethod
    def read_snapshot_chunks(self, snapshot_id: int) -> Iterator[tuple[str, str]]:
        """The (kind, payload) chunks of a snapshot, in the order they were added."""

    @abstractmethod
    def prune_idempotency(self, before_ms: int, limit: int) -> int:
        """Forget up to `limit` idempotency records stored before `before_ms`."""

    @abstractmethod
    def close(self) -> None:
        """Release the storage. Safe to call twice."""

    @abstractmethod
    def first_lsn(self) -> int:
        """The oldest LSN still in the log; `last_lsn() + 1` when the log is empty."""

    @abstractmethod
    def prune_log(self, up_to_lsn: int, before_ms: int, limit: int) -> int:
        """Forget up to `limit` of the oldest records with LSN <= `up_to_lsn` written before
        `before_ms`; how many were forgotten."""

    @abstractmethod
    def disk_id(self) -> str:
        """The identity of this storage: made when it is created, kept while it lives."""

    @abstractmethod
    def promised_epoch(self) -> int:
        """The highest epoch promised so far; 0 for a new store."""

    @abstractmethod
    def promise_epoch(self, epoch: int) -> None:
        """Raise the promised epoch to `epoch`, durable on return; a lower or equal one leaves
        the stored promise as it is."""

    @abstractmethod
    def epochs(self) -> list[tuple[int, int]]:
        """The (epoch, start_lsn) entries, sorted by start_lsn, then epoch."""

    @abstractmethod
    def add_epoch(self, epoch: int, start_lsn: int) -> None:
        """Record that `epoch` starts at `start_lsn`, durable on return; an epoch already
        recorded keeps its first start."""

    @abstractmethod
    def put_idempotency(self, records: Sequence[IdempotencyRecord]) -> None:
        """Insert each record, replacing a stored one of the same key, in one durable
        transaction."""

    @abstractmethod
    def read_idempotency_since(
        self, at_ms: int, after_key: str, limit: int
    ) -> list[IdempotencyRecord]:
        """Up to `limit` records stored at or after `at_ms` whose key sorts after `after_key`,
        in key order: a page of the records a follower copies."""

    @abstractmethod
    def append_copied(
        self, records: Sequence[LogRecord], idempotency: Sequence[IdempotencyRecord] = ()
    ) -> None:
        """Append log records copied from another replica, and insert or replace idempotency
        records, in one durable transaction, or raise StorageError and write none; each LSN
        must follow the last one."""

    @abstractmethod
    def install_snapshot(
        self, start_lsn: int, at_ms: int, chunks: Sequence[tuple[str, str]]
    ) -> None:
        """Store a complete snapshot of (kind, payload) `chunks` in one durable transaction, so
        that it is the latest and `last_lsn()` is `start_lsn`; StorageError if the log is not
        empty. Snapshots stored before it are dropped."""

    @abstractmethod
    def wipe(self) -> None:
        """Forget every log record, idempotency record, snapshot and epoch entry, durable on
        return. The promised epoch stays; the file gets a new disk id: what it acknowledged
        is gone, so it must not vote as the disk that did until it has copied the log again."""

    def read_log_matching(
        self, needle: str, until_ms: int, before_lsn: int, limit: int
    ) -> list[tuple[int, int, str]]:
        """(lsn, at_ms, events) of up to `limit` records whose events' text contains `needle`,
        written at or before `until_ms`, with LSN < `before_lsn`: newest first."""
        found = [
            (r.lsn, r.at_ms, r.events)
            for r in self.iter_log(0)
            if needle in r.events and r.at_ms <= until_ms and r.lsn < before_lsn
        ]
        return found[::-1][:limit]

    def read_log_page(
        self, after_lsn: int, limit: int, byte_limit: int
    ) -> list[tuple[int, int, str]]:
        """`read_log_events`, stopping once about `byte_limit` bytes of events are read (at
        least one record): a page of a log of large records reads only what it returns."""
        return within_bytes(self.read_log_events(after_lsn, limit), byte_limit)

    def read_log_events(self, after_lsn: int, limit: int) -> list[tuple[int, int, str]]:
        """(lsn, at_ms, events) of the records `read_log` returns: what replay needs. Backends
        may read it more cheaply, without the commands."""
        return [(r.lsn, r.at_ms, r.events) for r in self.read_log(after_lsn, limit)]

    def iter_log(self, after_lsn: int, page_size: int = 10_000) -> Iterator[LogRecord]:
        """Every record after `after_lsn`, oldest first, read page by page."""
        while True:
            page = self.read_log(after_lsn, page_size)
            yield from page
            if len(page) < page_size:
                return
            after_lsn = page[-1].lsn


def within_bytes(
    records: list[tuple[int, int, str]], byte_limit: int
) -> list[tuple[int, int, str]]:
    """The first of (lsn, at_ms, events) `records` whose events fit in about `byte_limit`
    bytes; at least one."""
    size = 0
    for count, (_, _, events) in enumerate(records):
        size += len(events)
        if size > byte_limit and count > 0:
            return records[:count]
    return records


def epoch_at(entries: Sequence[tuple[int, int]], lsn: int) -> int:
    """The epoch of the (epoch, start_lsn) entry with the largest start_lsn <= `lsn` (of equal
    starts, the largest epoch); 0 if there is none or `lsn` <= 0."""
    if lsn <= 0:
        return 0
    started = [(start_lsn, epoch) for epoch, start_lsn in entries if start_lsn <= lsn]
    return max(started)[1] if started else 0
