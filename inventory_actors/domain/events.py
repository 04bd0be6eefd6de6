"""Events: what happened, past tense. Each carries the post-image of everything it touched, so
applying an event is setting values: replay is deterministic and applying twice is harmless.
"""

from enum import StrEnum
from typing import NamedTuple


class HoldStatus(StrEnum):
    # Only reservations across shards are ever pending: while their lines are being held.
    PENDING = "pending"
    ACTIVE = "active"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"


class LevelImage(NamedTuple):
    """One SKU-location after the change, with the SKU's new version."""

    sku: str
    location: str
    on_hand: int
    reserved: int
    version: int


class HoldLine(NamedTuple):
    """One line of a placed hold: always at one location."""

    sku: str
    location: str
    quantity: int


class StockAdjusted(NamedTuple):
    level: LevelImage
    delta: int
    reason: str
    reference: str | None


class StockSet(NamedTuple):
    level: LevelImage
    on_hand_before: int
    reason: str
    reference: str | None


class StockTransferred(NamedTuple):
    source: LevelImage
    target: LevelImage
    quantity: int
    reference: str | None


class HoldPlaced(NamedTuple):
    hold_id: str
    lines: tuple[HoldLine, ...]
    expires_at_ms: int
    reference: str | None
    levels: tuple[LevelImage, ...]
    # A shard's part of a reservation across shards: only its home shard's decision ends it,
    # never this shard's own expiry timer.
    coordinated: bool = False


class HoldFinished(NamedTuple):
    """A hold left `active`: committed, released or expired. `lines` are the hold's own (what
    each level's units were before), in records written since the change feed; older records
    have none."""

    hold_id: str
    status: HoldStatus
    levels: tuple[LevelImage, ...]
    lines: tuple[HoldLine, ...] = ()


class HoldExtended(NamedTuple):
    hold_id: str
    expires_at_ms: int


class HoldsPruned(NamedTuple):
    hold_ids: tuple[str, ...]


class ReservationOpened(NamedTuple):
    """Home shard: a reservation across `shards` is pending until `lease_until_ms`;
    `remote_shards` are the participants other than the home."""

    reservation_id: str
    shards: tuple[int, ...]
    remote_shards: tuple[int, ...]
    ttl_ms: int
    lease_until_ms: int
    reference: str | None


class ReservationActivated(NamedTuple):
    reservation_id: str
    expires_at_ms: int
    lines: tuple[HoldLine, ...]


class ReservationFinished(NamedTuple):
    """The decision, made once: committed, released or expired. Every remote shard must
    still be told (it is unsettled until then)."""

    reservation_id: str
    status: HoldStatus


class ReservationExtended(NamedTuple):
    reservation_id: str
    expires_at_ms: int


class ReservationSettled(NamedTuple):
    reservation_id: str
    shard_id: int


class StockRestocked(NamedTuple):
    """The applied rows of a restock command, columnar: for each, its row number, the level,
    `on_hand` before and after, the level's `reserved` and the SKU's version after."""

    job_id: str
    chunk: int
    mode: str
    rows: tuple[int, ...]
    skus: tuple[str, ...]
    locations: tuple[str, ...]
    on_hand_before: tuple[int, ...]
    on_hand: tuple[int, ...]
    reserved: tuple[int, ...]
    versions: tuple[int, ...]
    reasons: tuple[str, ...]


class ThresholdSet(NamedTuple):
    """The low-stock threshold of one SKU-location; None: it has none any more."""

    sku: str
    location: str
    low_stock_below: int | None


class StockLow(NamedTuple):
    """`available` (on_hand - reserved) fell below the level's threshold: once per crossing."""

    sku: str
    location: str
    available: int
    low_stock_below: int


class StockRecovered(NamedTuple):
    """`available` is no longer below the threshold (or the threshold that made the level low
    was removed: `low_stock_below` is then the removed one). Once per crossing back."""

    sku: str
    location: str
    available: int
    low_stock_below: int


Event = (
    StockAdjusted
    | StockSet
    | StockTransferred
    | HoldPlaced
    | HoldFinished
    | HoldExtended
    | HoldsPruned
    | ReservationOpened
    | ReservationActivated
    | ReservationFinished
    | ReservationExtended
    | ReservationSettled
    | StockRestocked
    | ThresholdSet
    | StockLow
    | StockRecovered
)
