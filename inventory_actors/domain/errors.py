"""Domain errors: a command that raises one of these has changed nothing.

Every error pickles by its positional arguments, so it travels through Ray unchanged.
"""

from typing import NamedTuple


class DomainError(Exception):
    """A command was refused by the rules of the ledger."""

    slug = "domain-error"


class InvalidCommand(DomainError):
    """The command breaks a limit or names something malformed."""

    slug = "validation-error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class Shortage(NamedTuple):
    """One line that could not be served: `location` is None when the service chose it."""

    sku: str
    location: str | None
    requested: int
    available: int


class InsufficientStock(DomainError):
    """Not enough available stock for one or more lines."""

    slug = "insufficient-stock"

    def __init__(self, shortages: tuple[Shortage, ...]) -> None:
        super().__init__(shortages)
        self.shortages = shortages


class VersionConflict(DomainError):
    """The SKU is not at the version the caller expected."""

    slug = "version-conflict"

    def __init__(self, sku: str, expected: int, actual: int) -> None:
        super().__init__(sku, expected, actual)
        self.sku, self.expected, self.actual = sku, expected, actual


class HoldNotFound(DomainError):
    """No hold with this id is known to the shard."""

    slug = "not-found"

    def __init__(self, hold_id: str) -> None:
        super().__init__(hold_id)
        self.hold_id = hold_id


class HoldExists(DomainError):
    """A hold with this id was already placed."""

    slug = "hold-exists"

    def __init__(self, hold_id: str) -> None:
        super().__init__(hold_id)
        self.hold_id = hold_id


class HoldNotActive(DomainError):
    """The hold is not active, so it cannot move this way."""

    slug = "reservation-not-active"

    def __init__(self, hold_id: str, status: str) -> None:
        super().__init__(hold_id, status)
        self.hold_id, self.status = hold_id, status


class InvariantViolation(AssertionError):
    """A bug: the ledger reached a state its rules forbid. Never caught by the domain."""
