"""What replicas say to each other: answers to a shipped batch, to a seal, and pages of a log
copied from another replica. Plain tuples: they travel through Ray."""

from collections.abc import Sequence
from typing import Any, NamedTuple

from persistence import IdempotencyRecord, LogRecord

# tuple.__new__ skips the Python-level __new__ of a named tuple, for values built per record.
_new = tuple.__new__


def as_records(
    records: Sequence[Sequence[Any]], idempotency: Sequence[Sequence[Any]]
) -> tuple[list[LogRecord], list[IdempotencyRecord]]:
    """Shipped batches travel as plain tuples (they pickle four times faster than named
    ones); the records they are again."""
    return (
        [_new(LogRecord, record) for record in records],
        [_new(IdempotencyRecord, record) for record in idempotency],
    )


class ReplicaState(NamedTuple):
    """Where a replica stands: the highest epoch it promised to, its log's end, and its file."""

    promised_epoch: int
    last_lsn: int
    last_epoch: int
    disk_id: str


class ShipAnswer(NamedTuple):
    """`ok`: the batch (or heartbeat) follows this replica's log and is on its disk. Otherwise
    the replica promised a newer epoch (the sender is deposed) or its log does not end where
    the batch starts (it copies what it lacks by itself)."""

    ok: bool
    state: ReplicaState


class SealAnswer(NamedTuple):
    """`ok`: the replica promised the epoch and refuses every older one from now on."""

    ok: bool
    state: ReplicaState


class TailPage(NamedTuple):
    """Records after a replica's position in another replica's log, with that log's epoch
    entries and its last LSN when read."""

    records: list[LogRecord]
    epochs: list[tuple[int, int]]
    source_last_lsn: int


class SnapshotCopy(NamedTuple):
    """A replica's newest complete snapshot, whole, and its epoch entries."""

    start_lsn: int
    at_ms: int
    chunks: list[tuple[str, str]]
    epochs: list[tuple[int, int]]
