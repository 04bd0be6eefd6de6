"""What travels between callers and shard actors: submissions in, outcomes out."""

import hashlib
from typing import NamedTuple

from inventory_actors.domain import Command, DomainError, Result
from inventory_actors.shard.codec import encode_command
from inventory_actors.shard.errors import ServiceError

IDEMPOTENCY_KEY_LENGTH_MAX = 255
# Keys the service derives from a client's key for the steps of one request (a cart's steps, a
# key's claim) contain this control character, which a client's key (printable ASCII) never
# does: a derived key and a client's key cannot be the same text.
DERIVED_KEY_MARK = "\x1f"


class Submission(NamedTuple):
    """A command for one shard; with a key it is applied at most once.

    `fingerprint` says what "the same command" means for the key; by default, the command's
    encoding. The HTTP layer passes its own (method, path and body).
    """

    command: Command
    idempotency_key: str | None = None
    fingerprint: str | None = None


class Outcome(NamedTuple):
    """A command's result or error; `replayed` when it came from an idempotency record;
    `lsn` of the log record that holds it, None when the command changed nothing."""

    value: Result | DomainError | ServiceError
    replayed: bool = False
    lsn: int | None = None

    @property
    def ok(self) -> bool:
        return not isinstance(self.value, Exception)


def fingerprint_of(command: Command) -> str:
    return hashlib.sha256(encode_command(command).encode()).hexdigest()[:32]


def is_client_idempotency_key(key: object) -> bool:
    """A key a client may send: 1 to 255 printable ASCII characters."""
    return (
        isinstance(key, str)
        and 0 < len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX
        and all(32 <= ord(ch) < 127 for ch in key)
    )


def is_valid_idempotency_key(key: object) -> bool:
    """A key a shard accepts: a client's, or one derived from it (`DERIVED_KEY_MARK`)."""
    return (
        isinstance(key, str)
        and 0 < len(key) <= IDEMPOTENCY_KEY_LENGTH_MAX
        and all(32 <= ord(ch) < 127 or ch == DERIVED_KEY_MARK for ch in key)
    )


class ShardStatus(NamedTuple):
    """What a shard reports about itself, for operators and health checks."""

    shard_id: int
    path: str
    pid: int
    available: bool
    last_lsn: int
    queue_depth: int
    sku_count: int
    level_count: int
    active_holds: int
    holds: int
    batches: int
    commands: int
    records: int
    storage_failures: int
    overloaded: int
    recovery_seconds: float
    snapshots_completed: int
    snapshot_start_lsn: int
    records_since_snapshot: int
    # Reservations this shard is home of whose decision some other shard has not applied yet.
    unsettled_reservations: int = 0
