"""When `StockLow` and `StockRecovered` are emitted: the ledger side of low-stock thresholds (the
state side is `thresholds.py`), part of the Ledger. Crossings are judged once per command, after
its own events, and appended to the same log record, so a dip and return within one command
crosses nothing; replay applies the logged events and never detects again (docs/engine.md,
Low-stock thresholds)."""

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from inventory_actors.domain.commands import SetThreshold
from inventory_actors.domain.errors import InvalidCommand
from inventory_actors.domain.events import (
    Event,
    HoldExtended,
    HoldFinished,
    HoldPlaced,
    HoldsPruned,
    ReservationActivated,
    ReservationExtended,
    ReservationFinished,
    ReservationOpened,
    ReservationSettled,
    StockAdjusted,
    StockLow,
    StockRecovered,
    StockRestocked,
    StockSet,
    StockTransferred,
    ThresholdSet,
)
from inventory_actors.domain.limits import ON_HAND_MAX
from inventory_actors.domain.state import LedgerState
from inventory_actors.domain.thresholds import LevelKey
from inventory_actors.domain.validation import check_id
from inventory_actors.domain.views import ThresholdView

if TYPE_CHECKING:  # pragma: no cover
    _Base = LedgerState
else:
    _Base = object

# The SKU-locations each level-changing event touches.
LEVELS_TOUCHED: dict[type, Callable[[Any], Iterable[LevelKey]]] = {
    StockAdjusted: lambda e: ((e.level.sku, e.level.location),),
    StockSet: lambda e: ((e.level.sku, e.level.location),),
    StockTransferred: lambda e: (
        (e.source.sku, e.source.location),
        (e.target.sku, e.target.location),
    ),
    HoldPlaced: lambda e: [(image.sku, image.location) for image in e.levels],
    HoldFinished: lambda e: [(image.sku, image.location) for image in e.levels],
    StockRestocked: lambda e: zip(e.skus, e.locations, strict=True),
}
# Events that change no level. Every event type is in exactly one of the two (tested), so a new
# level-changing event cannot slip past crossing detection unnoticed.
NO_LEVELS_TOUCHED: frozenset[type] = frozenset(
    {
        HoldExtended,
        HoldsPruned,
        ReservationOpened,
        ReservationActivated,
        ReservationFinished,
        ReservationExtended,
        ReservationSettled,
        ThresholdSet,
        StockLow,
        StockRecovered,
    }
)


class CrossingHandlers(_Base):
    """Mixed into Ledger, which provides `_emit` and `_emitted`."""

    if TYPE_CHECKING:  # pragma: no cover
        _emitted: list[Event]

        def _emit(self, event: Any) -> None: ...

    def _set_threshold(self, cmd: SetThreshold) -> ThresholdView:
        """Setting a threshold under which the level already is emits StockLow at once;
        removing (or raising past it) the threshold of a low level emits StockRecovered, so
        every StockLow is followed by one StockRecovered. Setting the same value changes
        nothing and emits nothing."""
        check_id("sku", cmd.sku)
        check_id("location", cmd.location)
        value = cmd.low_stock_below
        if value is not None and (type(value) is not int or not 0 <= value <= ON_HAND_MAX):
            raise InvalidCommand(f"low_stock_below must be an integer from 0 to {ON_HAND_MAX}")
        key = (cmd.sku, cmd.location)
        previous = self.thresholds.get(key)
        if value != previous:
            self._emit(ThresholdSet(cmd.sku, cmd.location, value))
            self._emit_crossing(key, value, previous)
        return self.threshold_view(cmd.sku, cmd.location)

    def _emit_crossings(self) -> None:
        """After a command's events: one crossing event per thresholded level that changed
        sides. Callers skip this when there are no thresholds (a restock may touch 100,000
        levels)."""
        thresholds = self.thresholds
        touched: dict[LevelKey, None] = {}  # ordered: first touched, first reported
        for event in self._emitted:
            levels = LEVELS_TOUCHED.get(type(event))
            if levels is None:
                continue
            for key in levels(event):
                if key in thresholds:
                    touched[key] = None
        for key in touched:
            self._emit_crossing(key, thresholds[key], None)

    def _emit_crossing(self, key: LevelKey, threshold: int | None, removed: int | None) -> None:
        """StockLow or StockRecovered if `key` changed sides of `threshold` (None: it has no
        threshold any more, whose value was `removed`)."""
        sku_id, location = key
        available = self.available_at(sku_id, location)
        low_now = threshold is not None and available < threshold
        if low_now == (key in self.low):
            return
        if threshold is not None and low_now:
            self._emit(StockLow(sku_id, location, available, threshold))
            return
        below = threshold if threshold is not None else removed
        assert below is not None, "a low level always had a threshold"
        self._emit(StockRecovered(sku_id, location, available, below))
