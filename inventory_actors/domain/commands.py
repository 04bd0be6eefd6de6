"""Commands: what a caller asks one shard to do. Imperative names, immutable values.

Time is not part of a command; the shard passes `now_ms` when it executes one.
"""

from typing import NamedTuple


class AdjustStock(NamedTuple):
    """Add `delta` (positive or negative) to `on_hand` at one location."""

    sku: str
    location: str
    delta: int
    reason: str
    reference: str | None = None
    expected_version: int | None = None


class SetStock(NamedTuple):
    """Set `on_hand` at one location, as after a physical count."""

    sku: str
    location: str
    on_hand: int
    reason: str = "cycle_count"
    reference: str | None = None
    expected_version: int | None = None


class TransferStock(NamedTuple):
    """Move available units between two locations of one SKU, atomically."""

    sku: str
    from_location: str
    to_location: str
    quantity: int
    reference: str | None = None
    expected_version: int | None = None


class LineRequest(NamedTuple):
    """One requested line of a hold; `location` None lets the shard choose one."""

    sku: str
    quantity: int
    location: str | None = None


class ReserveStock(NamedTuple):
    """Place hold `hold_id` on every line, or on none of them."""

    hold_id: str
    lines: tuple[LineRequest, ...]
    ttl_ms: int
    reference: str | None = None


class CommitHold(NamedTuple):
    """The held units leave the building: they leave `on_hand` and `reserved`."""

    hold_id: str


class ReleaseHold(NamedTuple):
    """The held units become available again."""

    hold_id: str


class ExtendHold(NamedTuple):
    """Move an active hold's expiry to `ttl_ms` from now."""

    hold_id: str
    ttl_ms: int


class ExpireHolds(NamedTuple):
    """Expire active holds whose expiry has passed (at most `limit` of them)."""

    limit: int


class PruneHolds(NamedTuple):
    """Forget finished holds that finished before `finished_before_ms` (at most `limit`)."""

    finished_before_ms: int
    limit: int


Command = (
    AdjustStock
    | SetStock
    | TransferStock
    | ReserveStock
    | CommitHold
    | ReleaseHold
    | ExtendHold
    | ExpireHolds
    | PruneHolds
)
