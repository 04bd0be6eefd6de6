"""What the storage port stores: records, not domain objects and not HTTP."""

from typing import NamedTuple


class LogRecord(NamedTuple):
    """One command that changed state, with the events it produced, at one log sequence number."""

    lsn: int
    at_ms: int
    command: str
    events: str


class IdempotencyRecord(NamedTuple):
    """The first outcome of a command sent with `key`; `lsn` is None when it changed nothing."""

    key: str
    fingerprint: str
    lsn: int | None
    result: str
    at_ms: int


class SnapshotInfo(NamedTuple):
    """A complete snapshot: replaying the log after `start_lsn` over it gives the state."""

    snapshot_id: int
    start_lsn: int
    at_ms: int


class StorageError(Exception):
    """The storage failed; what was being written may not be durable."""
