"""The mutable state of one shard's ledger and the only code that changes it: `apply(event)`.

Applying an event sets the values it carries, so the state after a log replay is exactly the
state the live shard held. Invariants are checked here, where values change.
"""

import heapq
import operator
from collections import deque

from inventory_actors.domain.errors import InvariantViolation
from inventory_actors.domain.events import (
    Event,
    HoldExtended,
    HoldFinished,
    HoldPlaced,
    HoldsPruned,
    HoldStatus,
    LevelImage,
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
from inventory_actors.domain.invariants import StateChecks
from inventory_actors.domain.limits import ON_HAND_MAX
from inventory_actors.domain.records import Hold, Level, Reservation, Sku
from inventory_actors.domain.snapshot_io import SnapshotIO
from inventory_actors.domain.thresholds import LevelKey, ThresholdBook
from inventory_actors.domain.views import HoldView, LocationView, SkuView

_levels_of = operator.attrgetter("levels")


class LedgerState(SnapshotIO, ThresholdBook, StateChecks):
    """SKUs, their levels, the holds and the low-stock thresholds of one shard."""

    def __init__(self) -> None:
        self.skus: dict[str, Sku] = {}
        self.thresholds: dict[LevelKey, int] = {}
        self.low: set[LevelKey] = set()
        self.holds: dict[str, Hold] = {}
        self.reservations: dict[str, Reservation] = {}
        # Derived: reservations whose decision some remote shard has not applied yet.
        self.unsettled: dict[str, Reservation] = {}
        # Derived indexes, rebuilt after recovery: (expires_at_ms, hold_id) and finish order.
        self.expiry_heap: list[tuple[int, str]] = []
        self.finished: deque[tuple[int, str]] = deque()
        self.level_count = 0
        self.active_hold_count = 0
        # One string object per distinct location name, however many SKUs stock it.
        self.location_names: dict[str, str] = {}
        # During recovery a fuzzy snapshot may already lack a hold that a replayed record
        # finishes or extends (it was pruned later in the log); that is expected, not a bug.
        # The expiry heap and finish order are not kept up while replaying: whoever replays
        # calls rebuild_indexes at the end.
        self.replaying = False
        self._appliers = {
            StockAdjusted: self._apply_adjusted,
            StockSet: self._apply_set,
            StockTransferred: self._apply_transferred,
            HoldPlaced: self._apply_placed,
            HoldFinished: self._apply_finished,
            HoldExtended: self._apply_extended,
            HoldsPruned: self._apply_pruned,
            ReservationOpened: self._apply_opened,
            ReservationActivated: self._apply_activated,
            ReservationFinished: self._apply_reservation_finished,
            ReservationExtended: self._apply_reservation_extended,
            ReservationSettled: self._apply_settled,
            StockRestocked: self._apply_restocked,
            ThresholdSet: self._apply_threshold_set,
            StockLow: self._apply_low,
            StockRecovered: self._apply_recovered,
        }

    # -- applying events -------------------------------------------------------------------

    def apply(self, event: Event, at_ms: int) -> None:
        self._appliers[type(event)](event, at_ms)  # type: ignore[operator]

    def _apply_adjusted(self, event: StockAdjusted, at_ms: int) -> None:
        self.set_level(event.level)

    def _apply_set(self, event: StockSet, at_ms: int) -> None:
        self.set_level(event.level)

    def _apply_transferred(self, event: StockTransferred, at_ms: int) -> None:
        self.set_level(event.source)
        self.set_level(event.target)

    def _apply_restocked(self, event: StockRestocked, at_ms: int) -> None:
        """`set_level` for every applied row, inlined: a restock carries up to 100,000."""
        skus, shared = self.skus, self.shared_name
        for sku_id, location, on_hand, reserved, version in zip(
            event.skus, event.locations, event.on_hand, event.reserved, event.versions, strict=True
        ):
            if not 0 <= reserved <= on_hand <= ON_HAND_MAX:
                raise InvariantViolation(f"level out of bounds: {sku_id} {location} {on_hand}")
            sku = skus.get(sku_id)
            if sku is None:
                sku = skus[sku_id] = Sku(version)
            level = sku.levels.get(location)
            if level is None:
                sku.levels[shared(location)] = Level(on_hand, reserved)
                self.level_count += 1
            else:
                level.on_hand = on_hand
                level.reserved = reserved
            sku.version = version

    def _apply_placed(self, event: HoldPlaced, at_ms: int) -> None:
        for image in event.levels:
            self.set_level(image)
        previous = self.holds.get(event.hold_id)
        if previous is not None and previous.status is HoldStatus.ACTIVE:
            self.active_hold_count -= 1
        hold = Hold(event.hold_id, event.lines, event.expires_at_ms, event.reference, at_ms)
        self.holds[event.hold_id] = hold
        self.active_hold_count += 1
        if event.coordinated:
            # Never expired by this shard's timer: its home shard decides.
            hold.coordinated = True
        elif not self.replaying:  # rebuild_indexes builds the heap once replay ends
            heapq.heappush(self.expiry_heap, (event.expires_at_ms, event.hold_id))

    def _apply_finished(self, event: HoldFinished, at_ms: int) -> None:
        for image in event.levels:
            self.set_level(image)
        hold = self.holds.get(event.hold_id)
        if hold is None:
            if self.replaying:
                return
            raise InvariantViolation(f"hold {event.hold_id} finished but never placed")
        if hold.status is HoldStatus.ACTIVE:
            self.active_hold_count -= 1
        hold.status = HoldStatus(event.status)
        hold.finished_at_ms = at_ms
        if not self.replaying:
            self.finished.append((at_ms, hold.hold_id))

    def _apply_extended(self, event: HoldExtended, at_ms: int) -> None:
        hold = self.holds.get(event.hold_id)
        if hold is None:
            if self.replaying:
                return
            raise InvariantViolation(f"hold {event.hold_id} extended but never placed")
        hold.expires_at_ms = event.expires_at_ms
        if not self.replaying:
            heapq.heappush(self.expiry_heap, (event.expires_at_ms, event.hold_id))

    def _apply_pruned(self, event: HoldsPruned, at_ms: int) -> None:
        for hold_id in event.hold_ids:
            hold = self.holds.pop(hold_id, None)
            if hold is not None and hold.status is HoldStatus.ACTIVE:
                self.active_hold_count -= 1
            self.reservations.pop(hold_id, None)
            self.unsettled.pop(hold_id, None)

    def _apply_opened(self, event: ReservationOpened, at_ms: int) -> None:
        reservation = Reservation(event, at_ms)
        self.reservations[event.reservation_id] = reservation
        if not self.replaying:  # rebuild_indexes builds the heap once replay ends
            heapq.heappush(self.expiry_heap, (reservation.expires_at_ms, event.reservation_id))

    def _reservation(self, reservation_id: str) -> Reservation | None:
        reservation = self.reservations.get(reservation_id)
        if reservation is None and not self.replaying:
            raise InvariantViolation(f"reservation {reservation_id} changed but never opened")
        return reservation

    def _apply_activated(self, event: ReservationActivated, at_ms: int) -> None:
        reservation = self._reservation(event.reservation_id)
        if reservation is None:
            return
        reservation.status = HoldStatus.ACTIVE
        reservation.expires_at_ms = event.expires_at_ms
        reservation.lines = event.lines
        if not self.replaying:
            heapq.heappush(self.expiry_heap, (event.expires_at_ms, event.reservation_id))

    def _apply_reservation_finished(self, event: ReservationFinished, at_ms: int) -> None:
        reservation = self._reservation(event.reservation_id)
        if reservation is None:
            return
        reservation.status = HoldStatus(event.status)
        reservation.finished_at_ms = at_ms
        reservation.unsettled = reservation.remote_shards
        if reservation.unsettled:
            self.unsettled[reservation.reservation_id] = reservation
        if not self.replaying:
            self.finished.append((at_ms, reservation.reservation_id))

    def _apply_reservation_extended(self, event: ReservationExtended, at_ms: int) -> None:
        reservation = self._reservation(event.reservation_id)
        if reservation is None:
            return
        reservation.expires_at_ms = event.expires_at_ms
        if not self.replaying:
            heapq.heappush(self.expiry_heap, (event.expires_at_ms, event.reservation_id))

    def _apply_settled(self, event: ReservationSettled, at_ms: int) -> None:
        reservation = self.reservations.get(event.reservation_id)
        if reservation is None:
            return
        reservation.unsettled = tuple(s for s in reservation.unsettled if s != event.shard_id)
        if not reservation.unsettled:
            self.unsettled.pop(event.reservation_id, None)

    def set_level(self, image: LevelImage) -> None:
        if not 0 <= image.reserved <= image.on_hand <= ON_HAND_MAX:
            raise InvariantViolation(f"level out of bounds: {image}")
        sku = self.skus.get(image.sku)
        if sku is None:
            sku = self.skus[image.sku] = Sku(image.version)
        level = sku.levels.get(image.location)
        if level is None:
            sku.levels[self.shared_name(image.location)] = Level(image.on_hand, image.reserved)
            self.level_count += 1
        else:
            level.on_hand = image.on_hand
            level.reserved = image.reserved
        sku.version = image.version

    # -- reads -----------------------------------------------------------------------------

    def sku_view(self, sku_id: str) -> SkuView | None:
        sku = self.skus.get(sku_id)
        if sku is None:
            return None
        locations = tuple(
            LocationView(name, level.on_hand, level.reserved)
            for name, level in sorted(sku.levels.items())
        )
        return SkuView(sku_id, sku.version, locations)

    def hold_view(self, hold_id: str, now_ms: int) -> HoldView | None:
        """A hold, or the reservation across shards that this shard is the home of."""
        reservation = self.reservations.get(hold_id)
        if reservation is not None:
            return self.reservation_view(reservation, now_ms)
        hold = self.holds.get(hold_id)
        if hold is None:
            return None
        return HoldView(
            hold.hold_id,
            self.status_at(hold, now_ms),
            hold.lines,
            hold.expires_at_ms,
            hold.reference,
            hold.created_at_ms,
            hold.finished_at_ms,
        )

    @staticmethod
    def reservation_view(reservation: Reservation, now_ms: int) -> HoldView:
        return HoldView(
            reservation.reservation_id,
            reservation.status_at(now_ms),
            reservation.lines,
            reservation.expires_at_ms,
            reservation.reference,
            reservation.created_at_ms,
            reservation.finished_at_ms,
        )

    @staticmethod
    def status_at(hold: Hold, now_ms: int) -> HoldStatus:
        """An active hold past its expiry already counts as expired, before the timer logs it.
        A coordinated hold never does: its home shard decides when it ends."""
        expired = hold.status is HoldStatus.ACTIVE and hold.expires_at_ms <= now_ms
        if expired and not hold.coordinated:
            return HoldStatus.EXPIRED
        return hold.status

    def next_expiry_ms(self) -> int | None:
        """When the next hold or reservation is due, dropping stale heap entries on the way.
        Holds and reservations share the heap; a reservation's entry wins over its id's home
        part (a coordinated hold, which never has an entry)."""
        heap = self.expiry_heap
        while heap:
            expires_at_ms, hold_id = heap[0]
            reservation = self.reservations.get(hold_id)
            if reservation is not None:
                live = reservation.status in (HoldStatus.PENDING, HoldStatus.ACTIVE)
                if live and reservation.expires_at_ms == expires_at_ms:
                    return expires_at_ms
            else:
                hold = self.holds.get(hold_id)
                live = hold is not None and hold.status is HoldStatus.ACTIVE
                if live and hold is not None and hold.expires_at_ms == expires_at_ms:
                    return expires_at_ms
            heapq.heappop(heap)
        return None

    def rebuild_indexes(self) -> None:
        """Rebuild what is derived from holds: counts, the expiry heap and the finish order."""
        active = [h for h in self.holds.values() if h.status is HoldStatus.ACTIVE]
        self.active_hold_count = len(active)
        self.expiry_heap = [(h.expires_at_ms, h.hold_id) for h in active if not h.coordinated]
        live = (HoldStatus.PENDING, HoldStatus.ACTIVE)
        reservations = self.reservations.values()
        self.expiry_heap += [
            (r.expires_at_ms, r.reservation_id) for r in reservations if r.status in live
        ]
        heapq.heapify(self.expiry_heap)
        finished = [
            (h.finished_at_ms or 0, h.hold_id)
            for h in self.holds.values()
            if h.status is not HoldStatus.ACTIVE
        ]
        finished += [
            (r.finished_at_ms or 0, r.reservation_id) for r in reservations if r.status not in live
        ]
        self.finished = deque(sorted(finished))
        self.unsettled = {r.reservation_id: r for r in reservations if r.unsettled}
        self.level_count = sum(map(len, map(_levels_of, self.skus.values())))

    # -- invariants ------------------------------------------------------------------------

    def check_invariants(self) -> None:
        """Check every rule over the whole state. O(levels + hold lines): for tests and recovery."""
        self.check_levels_and_holds()
        self.check_thresholds()
