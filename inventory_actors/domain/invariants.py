"""Whole-state checks of a shard's ledger: its invariants, over levels, holds and reservations
(for recovery and tests), and a comparable picture of the state (for tests of replay). A mixin
of `LedgerState`, kept apart from the code that changes the state."""

import operator
from collections.abc import Iterator
from itertools import chain

from inventory_actors.domain.errors import InvariantViolation
from inventory_actors.domain.events import HoldStatus
from inventory_actors.domain.limits import ON_HAND_MAX
from inventory_actors.domain.records import Hold, Level, Reservation, Sku
from inventory_actors.domain.thresholds import LevelKey

_version_of = operator.attrgetter("version")
_levels_of = operator.attrgetter("levels")
_on_hand_of = operator.attrgetter("on_hand")
_reserved_of = operator.attrgetter("reserved")


class StateChecks:
    """Reads the state only; `LedgerState` holds it."""

    skus: dict[str, Sku]
    holds: dict[str, Hold]
    reservations: dict[str, Reservation]
    unsettled: dict[str, Reservation]
    thresholds: dict[LevelKey, int]
    low: set[LevelKey]
    active_hold_count: int

    def check_levels_and_holds(self) -> None:
        """Levels within bounds, each level reserving exactly what its active holds hold, every
        version positive, the active-hold count and the reservations as `_check_reservation`
        says. O(levels + hold lines)."""
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
        thresholds = tuple(sorted(self.thresholds.items()))
        return (tuple(skus), tuple(holds), tuple(reservations), thresholds, tuple(sorted(self.low)))
