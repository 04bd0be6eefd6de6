"""Read models the ledger answers with. Immutable values, safe to send anywhere."""

from typing import NamedTuple

from inventory_actors.domain.events import HoldLine, HoldStatus


class LocationView(NamedTuple):
    location: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class SkuView(NamedTuple):
    sku: str
    version: int
    locations: tuple[LocationView, ...]

    @property
    def on_hand(self) -> int:
        return sum(level.on_hand for level in self.locations)

    @property
    def reserved(self) -> int:
        return sum(level.reserved for level in self.locations)

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class HoldView(NamedTuple):
    hold_id: str
    status: HoldStatus
    lines: tuple[HoldLine, ...]
    expires_at_ms: int
    reference: str | None
    created_at_ms: int
    finished_at_ms: int | None


class ExpiryResult(NamedTuple):
    expired: int


class PruneResult(NamedTuple):
    pruned: int


class KeyClaimed(NamedTuple):
    shard_id: int


class RestockResult(NamedTuple):
    """What became of a restock command's rows: how many were applied, and each rejected
    row's number with its reason."""

    job_id: str
    chunk: int
    applied: int
    rejects: tuple[tuple[int, str], ...]


class ThresholdView(NamedTuple):
    """One SKU-location's threshold (None: none), its `available` and whether it is low."""

    sku: str
    location: str
    low_stock_below: int | None
    available: int
    low: bool


Result = (
    SkuView | HoldView | ExpiryResult | PruneResult | KeyClaimed | RestockResult | ThresholdView
)
