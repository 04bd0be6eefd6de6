"""Errors of the service around the domain: capacity, availability, storage, idempotency.

Like domain errors they pickle by their positional arguments and travel as values.
"""


class ServiceError(Exception):
    """The shard could not run the command; the domain never saw it."""

    slug = "service-error"
    retry_after_seconds: float | None = None


class Overloaded(ServiceError):
    """The shard's queue is full; nothing was applied. Retry after a pause."""

    slug = "overloaded"

    def __init__(self, detail: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(detail, retry_after_seconds)
        self.detail, self.retry_after_seconds = detail, retry_after_seconds


class ShardUnavailable(ServiceError):
    """The owning shard is down, recovering or did not answer in time.

    The outcome of a command that got this is unknown: retry with the same idempotency key.
    """

    slug = "shard-unavailable"

    def __init__(self, shard_id: int, detail: str, retry_after_seconds: float = 1.0) -> None:
        super().__init__(shard_id, detail, retry_after_seconds)
        self.shard_id, self.detail = shard_id, detail
        self.retry_after_seconds = retry_after_seconds


class NotPrimary(ShardUnavailable):
    """This replica of the shard does not take commands now: another one is the primary of
    `epoch` (or will be). Refused before the ledger saw it: sending it to the primary is safe."""

    def __init__(self, shard_id: int, epoch: int, primary: str) -> None:
        ServiceError.__init__(self, shard_id, epoch, primary)
        self.shard_id, self.epoch, self.primary = shard_id, epoch, primary
        self.detail = f"shard {shard_id}: not the primary of epoch {epoch} (try {primary!r})"
        self.retry_after_seconds = 0.2

    def __str__(self) -> str:
        return self.detail


class StorageFailure(ServiceError):
    """Writing the batch failed; the shard rebuilt its state from disk.

    The command is not applied unless the disk says otherwise: retry with the same idempotency
    key to learn which.
    """

    slug = "shard-unavailable"

    def __init__(self, shard_id: int, detail: str) -> None:
        super().__init__(shard_id, detail)
        self.shard_id, self.detail = shard_id, detail
        self.retry_after_seconds = 1.0


class IdempotencyKeyReused(ServiceError):
    """The key was first used with a different command."""

    slug = "idempotency-key-reused"

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class NotOwner(ServiceError):
    """The command reached a shard that does not own its SKU, or the reservation it names:
    the caller routed it with a wrong partition map, a fault of the service, not of the
    request. Refused before the ledger saw it; nothing was written. Sending it to the same
    shard again is refused again, so it is not worth a retry.

    `what` is "SKU" or "reservation", `key` the SKU or the hold id, `owner` the shard that owns
    it (a reservation's home)."""

    slug = "shard-misrouted"

    def __init__(self, shard_id: int, what: str, key: str, owner: int) -> None:
        super().__init__(shard_id, what, key, owner)
        self.shard_id, self.what, self.key, self.owner = shard_id, what, key, owner
        self.detail = f"shard {shard_id} does not own {what} {key!r}: shard {owner} does"

    def __str__(self) -> str:
        return self.detail
