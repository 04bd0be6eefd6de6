"""The mutable state of one shard's ledger and the only code that changes it: `apply(event)`.

Applying an event sets the values it carries, so the state after a log replay is exactly the
state the live shard held. Invariants are checked here, where values change.
"""

import heapq
import operator
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import Any

from inventory_actors.domain.errors import InvariantViolation
from inventory_actors.domain.events import (
    Event,
    HoldExtended,
    HoldFinished,
    HoldLine,
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
    StockSet,
    StockTransferred,
)
from inventory_actors.domain.limits import ON_HAND_MAX
from inventory_actors.domain.views import HoldView, LocationView, SkuView

# Snapshot rows, as plain lists so any encoder can carry them:
#   sku row:  [sku, version, [[location, on_hand, reserved], ...]]
#   hold row: [hold_id, status, expires_at_ms, reference, created_at_ms, finished_at_ms,
#              [[sku, location, quantity], ...]]
SnapshotRow = list[object]

# Columnar snapshot chunks: one list per field, so decoding builds a handful of lists per chunk
# instead of one or two per row, and each location name appears once per chunk:
#   sku columns:  [names, sku_ids, versions, level_counts, name_indexes, on_hands, reserveds]
#   hold columns: [names, hold_ids, statuses, expires_at_ms, references, created_at_ms,
#                  finished_at_ms, line_counts, line_skus, line_name_indexes, line_quantities]
# A SKU's levels (a hold's lines) are the next level_counts[i] (line_counts[i]) entries of the
# per-level (per-line) columns.
SnapshotColumns = list[list[Any]]

_STATUSES = {status.value: status for status in HoldStatus}
_version_of = operator.attrgetter("version")
_levels_of = operator.attrgetter("levels")
_on_hand_of = operator.attrgetter("on_hand")
_reserved_of = operator.attrgetter("reserved")


class Level:
    """One SKU-location. Slots keep a million of them small."""

    __slots__ = ("on_hand", "reserved")

    def __init__(self, on_hand: int, reserved: int) -> None:
        self.on_hand = on_hand
        self.reserved = reserved


class Sku:
    __slots__ = ("levels", "version")

    def __init__(self, version: int, levels: dict[str, Level] | None = None) -> None:
        self.version = version
        self.levels: dict[str, Level] = {} if levels is None else levels


class Hold:
    __slots__ = (
        "coordinated",
        "created_at_ms",
        "expires_at_ms",
        "finished_at_ms",
        "hold_id",
        "lines",
        "reference",
        "status",
    )

    def __init__(
        self,
        hold_id: str,
        lines: tuple[HoldLine, ...],
        expires_at_ms: int,
        reference: str | None,
        created_at_ms: int,
    ) -> None:
        self.hold_id = hold_id
        self.lines = lines
        self.expires_at_ms = expires_at_ms
        self.reference = reference
        self.created_at_ms = created_at_ms
        self.status = HoldStatus.ACTIVE
        self.finished_at_ms: int | None = None
        self.coordinated = False


class Reservation:
    """The home shard's record of a reservation across shards: the one place its state is
    decided. Participants hold their parts as coordinated holds with the same id."""

    __slots__ = (
        "created_at_ms",
        "expires_at_ms",
        "finished_at_ms",
        "lease_until_ms",
        "lines",
        "reference",
        "remote_shards",
        "reservation_id",
        "shards",
        "status",
        "ttl_ms",
        "unsettled",
    )

    def __init__(self, event: ReservationOpened, at_ms: int) -> None:
        self.reservation_id = event.reservation_id
        self.shards = event.shards
        self.remote_shards = event.remote_shards
        self.ttl_ms = event.ttl_ms
        self.lease_until_ms = event.lease_until_ms
        self.reference = event.reference
        self.created_at_ms = at_ms
        self.status = HoldStatus.PENDING
        self.expires_at_ms = event.lease_until_ms
        self.lines: tuple[HoldLine, ...] = ()
        self.finished_at_ms: int | None = None
        # Remote shards not yet told the final decision.
        self.unsettled: tuple[int, ...] = ()

    def status_at(self, now_ms: int) -> HoldStatus:
        """Past its deadline a reservation already counts as finished, before the timer logs
        it: a pending one as released (it never became active), an active one as expired."""
        if self.expires_at_ms <= now_ms:
            if self.status is HoldStatus.PENDING:
                return HoldStatus.RELEASED
            if self.status is HoldStatus.ACTIVE:
                return HoldStatus.EXPIRED
        return self.status


class LedgerState:
    """SKUs, their levels and the holds of one shard."""

    def __init__(self) -> None:
        self.skus: dict[str, Sku] = {}
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

    # -- snapshots -------------------------------------------------------------------------

    def export_skus(self, sku_ids: Iterable[str]) -> list[SnapshotRow]:
        rows: list[SnapshotRow] = []
        for sku_id in sku_ids:
            sku = self.skus.get(sku_id)
            if sku is not None:
                levels = [[name, lv.on_hand, lv.reserved] for name, lv in sku.levels.items()]
                rows.append([sku_id, sku.version, levels])
        return rows

    def export_holds(self, hold_ids: Iterable[str]) -> list[SnapshotRow]:
        rows: list[SnapshotRow] = []
        for hold_id in hold_ids:
            h = self.holds.get(hold_id)
            if h is not None:
                lines = [list(line) for line in h.lines]
                rows.append(
                    [
                        h.hold_id,
                        h.status.value,
                        h.expires_at_ms,
                        h.reference,
                        h.created_at_ms,
                        h.finished_at_ms,
                        lines,
                    ]
                )
        return rows

    def load_skus(self, rows: Iterable[SnapshotRow]) -> None:
        """Load row-format chunks (the format before columns; still read)."""
        shared = self.shared_name
        for sku_id, version, levels in rows:
            sku = self.skus[sku_id] = Sku(version)  # type: ignore[index,arg-type]
            for name, on_hand, reserved in levels:  # type: ignore[attr-defined]
                sku.levels[shared(name)] = Level(on_hand, reserved)
            self.level_count += len(sku.levels)

    def load_holds(self, rows: Iterable[SnapshotRow]) -> None:
        for hold_id, status, expires_at, reference, created_at, finished_at, lines in rows:
            hold_lines = tuple(HoldLine(*line) for line in lines)  # type: ignore[attr-defined]
            hold = Hold(hold_id, hold_lines, expires_at, reference, created_at)  # type: ignore[arg-type]
            hold.status = HoldStatus(str(status))
            hold.finished_at_ms = finished_at  # type: ignore[assignment]
            self.holds[hold_id] = hold  # type: ignore[index]

    def shared_name(self, name: str) -> str:
        """The one string object kept for this location name."""
        return self.location_names.setdefault(name, name)

    def export_sku_columns(
        self, sku_ids: Sequence[str], start: int, max_levels: int
    ) -> tuple[SnapshotColumns, int]:
        """SKUs from `sku_ids[start:]` until `max_levels` levels (at least one SKU, so chunks
        stay even whatever the locations per SKU), and where the next chunk starts. SKUs no
        longer present are skipped."""
        names: dict[str, int] = {}
        ids: list[str] = []
        versions: list[int] = []
        counts: list[int] = []
        where: list[int] = []
        on_hands: list[int] = []
        reserveds: list[int] = []
        skus, end, total = self.skus, start, len(sku_ids)
        while end < total and len(where) < max_levels:
            sku_id = sku_ids[end]
            end += 1
            sku = skus.get(sku_id)
            if sku is None:
                continue
            ids.append(sku_id)
            versions.append(sku.version)
            counts.append(len(sku.levels))
            for name, level in sku.levels.items():
                where.append(names.setdefault(name, len(names)))
                on_hands.append(level.on_hand)
                reserveds.append(level.reserved)
        return [list(names), ids, versions, counts, where, on_hands, reserveds], end

    def load_sku_columns(self, columns: SnapshotColumns) -> None:
        names, sku_ids, versions, counts, where, on_hands, reserveds = columns
        shared = [self.shared_name(name) for name in names]
        located = [shared[index] for index in where]
        # map() builds the levels without a Python-level loop around each constructor call.
        levels = list(map(Level, on_hands, reserveds))
        skus = self.skus
        if len(levels) == len(sku_ids):  # one location per SKU: no slicing needed
            for sku_id, version, name, level in zip(
                sku_ids, versions, located, levels, strict=True
            ):
                skus[sku_id] = Sku(version, {name: level})
        else:
            position = 0
            for sku_id, version, count in zip(sku_ids, versions, counts, strict=True):
                end = position + count
                skus[sku_id] = Sku(
                    version, dict(zip(located[position:end], levels[position:end], strict=True))
                )
                position = end
        self.level_count += len(levels)

    def export_hold_columns(self, hold_ids: Iterable[str]) -> SnapshotColumns:
        names: dict[str, int] = {}
        columns: SnapshotColumns = [[] for _ in range(12)]
        _, ids, statuses, expires, references, created, finished = columns[:7]
        counts, line_skus, where, quantities, coordinated = columns[7:]
        for hold_id in hold_ids:
            hold = self.holds.get(hold_id)
            if hold is None:
                continue
            if hold.coordinated:
                coordinated.append(len(ids))
            ids.append(hold_id)
            statuses.append(hold.status.value)
            expires.append(hold.expires_at_ms)
            references.append(hold.reference)
            created.append(hold.created_at_ms)
            finished.append(hold.finished_at_ms)
            counts.append(len(hold.lines))
            for sku_id, location, quantity in hold.lines:
                line_skus.append(sku_id)
                where.append(names.setdefault(location, len(names)))
                quantities.append(quantity)
        columns[0] = list(names)
        return columns

    def load_hold_columns(self, columns: SnapshotColumns) -> None:
        names, ids, statuses, expires, references, created, finished = columns[:7]
        counts, line_skus, where, quantities = columns[7:11]
        # Chunks written before reservations across shards have no twelfth column.
        coordinated = columns[11] if len(columns) > 11 else ()
        shared = [self.shared_name(name) for name in names]
        lines = list(map(HoldLine, line_skus, [shared[index] for index in where], quantities))
        holds, position = self.holds, 0
        for hold_id, status, expires_at, reference, created_at, finished_at, count in zip(
            ids, statuses, expires, references, created, finished, counts, strict=True
        ):
            end = position + count
            hold = Hold(hold_id, tuple(lines[position:end]), expires_at, reference, created_at)
            hold.status = _STATUSES[status]
            hold.finished_at_ms = finished_at
            holds[hold_id] = hold
            position = end
        for index in coordinated:
            holds[ids[index]].coordinated = True

    def export_reservations(self, reservation_ids: Iterable[str]) -> list[SnapshotRow]:
        """Reservation rows (a home shard has few: they end and are pruned like holds)."""
        rows: list[SnapshotRow] = []
        for reservation_id in reservation_ids:
            r = self.reservations.get(reservation_id)
            if r is not None:
                rows.append(
                    [
                        r.reservation_id,
                        list(r.shards),
                        list(r.remote_shards),
                        r.ttl_ms,
                        r.lease_until_ms,
                        r.reference,
                        r.created_at_ms,
                        r.status.value,
                        r.expires_at_ms,
                        [list(line) for line in r.lines],
                        r.finished_at_ms,
                        list(r.unsettled),
                    ]
                )
        return rows

    def load_reservations(self, rows: Iterable[list[Any]]) -> None:
        for row in rows:
            rid, shards, remote, ttl_ms, lease_until_ms, reference, created_at_ms = row[:7]
            status, expires_at_ms, lines, finished_at_ms, unsettled = row[7:]
            opened = ReservationOpened(
                rid, tuple(shards), tuple(remote), ttl_ms, lease_until_ms, reference
            )
            reservation = Reservation(opened, created_at_ms)
            reservation.status = _STATUSES[status]
            reservation.expires_at_ms = expires_at_ms
            reservation.lines = tuple(HoldLine(*line) for line in lines)
            reservation.finished_at_ms = finished_at_ms
            reservation.unsettled = tuple(unsettled)
            self.reservations[rid] = reservation

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
        held = self._held_by_active_holds()
        if not self._levels_agree(held):
            self._raise_first_violation(held)
        counted = sum(1 for h in self.holds.values() if h.status is HoldStatus.ACTIVE)
        if counted != self.active_hold_count:
            raise InvariantViolation("active hold count drifted")
        for reservation in self.reservations.values():
            self._check_reservation(reservation)

    def _check_reservation(self, reservation: Reservation) -> None:
        """The home's own part follows the decision: held while the reservation is pending or
        active, never held after it finished; only a finished one has unsettled shards."""
        part = self.holds.get(reservation.reservation_id)
        live = reservation.status in (HoldStatus.PENDING, HoldStatus.ACTIVE)
        if part is not None:
            if not part.coordinated:
                raise InvariantViolation(f"{reservation.reservation_id}: home part uncoordinated")
            if (part.status is HoldStatus.ACTIVE) != live:
                raise InvariantViolation(f"{reservation.reservation_id}: home part disagrees")
        if live and reservation.unsettled:
            raise InvariantViolation(f"{reservation.reservation_id}: unsettled before decided")
        if bool(reservation.unsettled) != (reservation.reservation_id in self.unsettled):
            raise InvariantViolation(f"{reservation.reservation_id}: unsettled index drifted")

    def _held_by_active_holds(self) -> dict[tuple[str, str], int]:
        held: dict[tuple[str, str], int] = {}
        for hold in self.holds.values():
            if hold.status is not HoldStatus.ACTIVE:
                continue
            for line in hold.lines:
                key = (line.sku, line.location)
                held[key] = held.get(key, 0) + line.quantity
        return held

    def _levels_agree(self, held: dict[tuple[str, str], int]) -> bool:
        """Whether every rule holds, in column-wise passes that run in C: after recovery this
        visits a million levels. The held levels are looked up one by one; every other level
        must reserve nothing, which counting the reserving levels shows."""
        skus = self.skus
        if skus and min(map(_version_of, skus.values())) < 1:
            return False
        levels = list(chain.from_iterable(map(dict.values, map(_levels_of, skus.values()))))
        on_hands = list(map(_on_hand_of, levels))
        reserveds = list(map(_reserved_of, levels))
        if levels and (min(reserveds) < 0 or max(on_hands) > ON_HAND_MAX):
            return False
        if not all(map(operator.le, reserveds, on_hands)):
            return False
        if sum(map(bool, reserveds)) != sum(map(bool, held.values())):
            return False
        for (sku_id, name), quantity in held.items():
            sku = skus.get(sku_id)
            level = None if sku is None else sku.levels.get(name)
            if level is None or level.reserved != quantity:
                return False
        return True

    def _raise_first_violation(self, held: dict[tuple[str, str], int]) -> None:
        """Level by level, to name what is wrong."""
        for sku_id, sku, name, level in self.iter_levels():
            if not 0 <= level.reserved <= level.on_hand <= ON_HAND_MAX:
                raise InvariantViolation(f"{sku_id}@{name}: {level.on_hand}/{level.reserved}")
            if held.pop((sku_id, name), 0) != level.reserved:
                raise InvariantViolation(f"{sku_id}@{name}: reserved differs from active holds")
            if sku.version < 1:
                raise InvariantViolation(f"{sku_id}: version {sku.version}")
        if held:
            raise InvariantViolation(f"active holds on unknown levels: {sorted(held)[:5]}")
        raise InvariantViolation("levels disagree with active holds")

    def iter_levels(self) -> Iterator[tuple[str, Sku, str, Level]]:
        for sku_id, sku in self.skus.items():
            for name, level in sku.levels.items():
                yield sku_id, sku, name, level

    def fingerprint(self) -> tuple[object, ...]:
        """A comparable picture of the whole state, for tests of replay."""
        skus = sorted(
            (
                sid,
                s.version,
                tuple(sorted((n, lv.on_hand, lv.reserved) for n, lv in s.levels.items())),
            )
            for sid, s in self.skus.items()
        )
        holds = sorted(
            (
                h.hold_id,
                h.status.value,
                h.lines,
                h.expires_at_ms,
                h.reference,
                h.created_at_ms,
                h.finished_at_ms,
                h.coordinated,
            )
            for h in self.holds.values()
        )
        reservations = sorted(
            (
                r.reservation_id,
                r.status.value,
                r.shards,
                r.remote_shards,
                r.ttl_ms,
                r.lease_until_ms,
                r.expires_at_ms,
                r.reference,
                r.created_at_ms,
                r.finished_at_ms,
                r.lines,
                r.unsettled,
            )
            for r in self.reservations.values()
        )
        return (tuple(skus), tuple(holds), tuple(reservations))
