"""Low-stock thresholds and which SKU-locations are low now: the state side, a mixin of
`LedgerState`, changed only by applying `ThresholdSet`, `StockLow` and `StockRecovered` (when to
emit them is `crossings.py`'s). Rule, checked by `check_thresholds`: a SKU-location is in `low`
exactly when it has a threshold and its available (0 for a level never stocked) is below it."""

from collections.abc import Iterable
from typing import Any

from inventory_actors.domain.errors import InvariantViolation
from inventory_actors.domain.events import StockLow, StockRecovered, ThresholdSet
from inventory_actors.domain.limits import ON_HAND_MAX
from inventory_actors.domain.records import Sku
from inventory_actors.domain.views import ThresholdView

LevelKey = tuple[str, str]
# One alert: (sku, location, available, low_stock_below).
Alert = tuple[str, str, int, int]
# Snapshot rows of thresholds: [sku, location, low_stock_below, low].
ThresholdRow = list[Any]


class ThresholdBook:
    """Thresholds per SKU-location and the set of those that are low."""

    skus: dict[str, Sku]
    thresholds: dict[LevelKey, int]
    low: set[LevelKey]

    # -- applying events -------------------------------------------------------------------

    def _apply_threshold_set(self, event: ThresholdSet, at_ms: int) -> None:
        key = (event.sku, event.location)
        value = event.low_stock_below
        if value is None:
            self.thresholds.pop(key, None)
            return
        if type(value) is not int or not 0 <= value <= ON_HAND_MAX:
            raise InvariantViolation(f"threshold out of bounds: {event}")
        self.thresholds[key] = value

    def _apply_low(self, event: StockLow, at_ms: int) -> None:
        # No check against `thresholds` here: replay over a fuzzy snapshot may apply a StockLow
        # whose threshold the snapshot already lost; the final state is checked as a whole.
        self.low.add((event.sku, event.location))

    def _apply_recovered(self, event: StockRecovered, at_ms: int) -> None:
        self.low.discard((event.sku, event.location))

    # -- reads -----------------------------------------------------------------------------

    def available_at(self, sku_id: str, location: str) -> int:
        sku = self.skus.get(sku_id)
        level = None if sku is None else sku.levels.get(location)
        return 0 if level is None else level.on_hand - level.reserved

    def threshold_view(self, sku_id: str, location: str) -> ThresholdView:
        key = (sku_id, location)
        available = self.available_at(sku_id, location)
        return ThresholdView(sku_id, location, self.thresholds.get(key), available, key in self.low)

    def alerts(self) -> list[Alert]:
        """Every low SKU-location with its available units and threshold, sorted."""
        available, thresholds = self.available_at, self.thresholds
        return sorted(
            (sku_id, location, available(sku_id, location), thresholds[sku_id, location])
            for sku_id, location in self.low
        )

    # -- invariants ------------------------------------------------------------------------

    def check_thresholds(self) -> None:
        """`low` is exactly the thresholded levels whose available is below the threshold."""
        expected = {
            key for key, threshold in self.thresholds.items() if self.available_at(*key) < threshold
        }
        if expected != self.low:
            wrong = sorted(expected ^ self.low)[:5]
            raise InvariantViolation(f"low-stock set disagrees with thresholds at {wrong}")
        for key, threshold in self.thresholds.items():
            if type(threshold) is not int or not 0 <= threshold <= ON_HAND_MAX:
                raise InvariantViolation(f"threshold out of bounds at {key}: {threshold!r}")

    # -- snapshots -------------------------------------------------------------------------

    def export_thresholds(self, keys: Iterable[LevelKey]) -> list[ThresholdRow]:
        """Rows of the thresholds of `keys` still present. Low without a threshold cannot be
        (removing a low level's threshold recovers it), so one row per threshold says all."""
        rows: list[ThresholdRow] = []
        for key in keys:
            threshold = self.thresholds.get(key)
            if threshold is not None:
                rows.append([key[0], key[1], threshold, key in self.low])
        return rows

    def load_thresholds(self, rows: Iterable[ThresholdRow]) -> None:
        for sku_id, location, threshold, low in rows:
            key = (sku_id, location)
            self.thresholds[key] = threshold
            if low:
                self.low.add(key)
