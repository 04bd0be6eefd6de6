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
