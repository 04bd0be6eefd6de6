"""Commands: what a caller asks one shard to do. Imperative names, immutable values.

Time is not part of a command; the shard passes `now_ms` when it executes one.
"""

from typing import NamedTuple

from inventory_actors.domain.events import HoldLine


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


# -- reservations across shards (see docs/reservations.md) ----------------------------------


class OpenReservation(NamedTuple):
    """Home shard: record a reservation over several shards as pending until
    `lease_ms` from now, and hold the home's own `lines` (if any) in the same step."""

    reservation_id: str
    home_shard: int
    shards: tuple[int, ...]
    lines: tuple[LineRequest, ...]
    ttl_ms: int
    lease_ms: int
    reference: str | None = None


class PrepareHold(NamedTuple):
    """Participant shard: hold `lines` for a reservation until its home shard decides.
    Refused once `lease_until_ms` has passed by more than any clock skew (5 minutes)."""

    reservation_id: str
    lines: tuple[LineRequest, ...]
    lease_until_ms: int
    reference: str | None = None


class ActivateReservation(NamedTuple):
    """Home shard: every participant holds its lines (`lines`, the other shards' held
    lines); the reservation becomes active for its TTL."""

    reservation_id: str
    lines: tuple[HoldLine, ...]


class AbortReservation(NamedTuple):
    """Home shard: a participant could not hold its lines; release everything."""

    reservation_id: str


class SettleHold(NamedTuple):
    """Participant shard: apply the home's final decision (`status`) to this shard's part."""

    reservation_id: str
    status: str


class MarkSettled(NamedTuple):
    """Home shard: `shard_id` has applied the reservation's final decision."""

    reservation_id: str
    shard_id: int


class ClaimKey(NamedTuple):
    """Any shard: record that an idempotency key belongs to one request (the fingerprint sent
    with this command), which `shard_id` runs. Changes no stock: only the key's record counts,
    so that a key reused with another request on another shard is still recognised."""

    shard_id: int


class RestockRows(NamedTuple):
    """Rows of a restock job, applied in order, each on its own: a row that cannot be applied
    is rejected with its reason and never stops the others. `mode` "delta" adds each quantity
    to `on_hand`, "set" sets `on_hand` to it (a count). The columns are parallel: one entry
    per row; `rows` are the rows' numbers in the job's file."""

    job_id: str
    chunk: int
    mode: str
    rows: tuple[int, ...]
    skus: tuple[str, ...]
    locations: tuple[str, ...]
    quantities: tuple[int, ...]
    reasons: tuple[str, ...]


class SetThreshold(NamedTuple):
    """Alert when `available` at one SKU-location falls below `low_stock_below`; None removes
    the threshold. Not a stock change: the SKU's version stays."""

    sku: str
    location: str
    low_stock_below: int | None


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
    | OpenReservation
    | PrepareHold
    | ActivateReservation
    | AbortReservation
    | SettleHold
    | MarkSettled
    | ClaimKey
    | RestockRows
    | SetThreshold
)
