"""Events: what happened, past tense. Each carries the post-image of everything it touched, so
applying an event is setting values: replay is deterministic and applying twice is harmless.
"""

from enum import StrEnum
from typing import NamedTuple


class HoldStatus(StrEnum):
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


class HoldFinished(NamedTuple):
    """A hold left `active`: committed, released or expired."""

    hold_id: str
    status: HoldStatus
    levels: tuple[LevelImage, ...]


class HoldExtended(NamedTuple):
    hold_id: str
    expires_at_ms: int


class HoldsPruned(NamedTuple):
    hold_ids: tuple[str, ...]


Event = (
    StockAdjusted
    | StockSet
    | StockTransferred
    | HoldPlaced
    | HoldFinished
    | HoldExtended
    | HoldsPruned
)
