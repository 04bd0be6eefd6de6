"""Reservations across shards, as the ledger of one shard sees them (docs/reservations.md).

The home shard keeps the reservation's record and decides, once, how it ends; every participant
(the home too) holds its lines as a *coordinated* hold that only that decision ends. These
handlers are part of the Ledger and validate before they emit, like every other handler."""

from typing import TYPE_CHECKING, Any

from inventory_actors.domain.commands import (
    AbortReservation,
    ActivateReservation,
    MarkSettled,
    OpenReservation,
    PrepareHold,
    ReserveStock,
    SettleHold,
)
from inventory_actors.domain.errors import (
    HoldExists,
    HoldNotActive,
    HoldNotFound,
    InvalidCommand,
)
from inventory_actors.domain.events import (
    HoldFinished,
    HoldLine,
    HoldPlaced,
    HoldStatus,
    LevelImage,
    ReservationActivated,
    ReservationExtended,
    ReservationFinished,
    ReservationOpened,
    ReservationSettled,
)
from inventory_actors.domain.limits import LINES_PER_HOLD_MAX
from inventory_actors.domain.records import Reservation
from inventory_actors.domain.reservations import plan_hold
from inventory_actors.domain.state import LedgerState
from inventory_actors.domain.validation import check_hold_id, check_reference, check_ttl_ms
from inventory_actors.domain.views import HoldView

FINAL = frozenset({HoldStatus.COMMITTED, HoldStatus.RELEASED, HoldStatus.EXPIRED})
LEASE_MS_MAX = 300_000
# How far a participant's clock may run ahead of its home's before it refuses a part as late. The
# lease deadline is the home's time; safety never rests on this check (a coordinated hold ends
# only by its home's decision, and the home tells every shard of a reservation it gave up), it
# only spares holding units for a cart its home already gave up.
PREPARE_CLOCK_SKEW_MS_MAX = 300_000
SHARD_ID_MAX = 1_023

if TYPE_CHECKING:  # pragma: no cover
    _Base = LedgerState
else:
    _Base = object


class CoordinationHandlers(_Base):
    """Mixed into Ledger, which provides `_emit`, `_now_ms` and the finishing helpers."""

    if TYPE_CHECKING:  # pragma: no cover
        _now_ms: int

        def _emit(self, event: Any) -> None: ...

        def _finished_event(self, hold: Any, status: HoldStatus) -> HoldFinished: ...

        def images_after(
            self, lines: tuple[HoldLine, ...], sign: int, sold: bool = False
        ) -> tuple[LevelImage, ...]: ...

    # -- home shard ------------------------------------------------------------------------

    def _open_reservation(self, cmd: OpenReservation) -> HoldView:
        check_hold_id(cmd.reservation_id)
        check_ttl_ms(cmd.ttl_ms)
        check_reference(cmd.reference)
        shards = _shard_ids(cmd.shards)
        if _shard_ids((cmd.home_shard,))[0] not in shards or len(shards) < 2:
            raise InvalidCommand("a reservation across shards names its home and another shard")
        if not isinstance(cmd.lease_ms, int) or not 0 < cmd.lease_ms <= LEASE_MS_MAX:
            raise InvalidCommand(f"lease must be 1 to {LEASE_MS_MAX} ms")
        rid = cmd.reservation_id
        if rid in self.reservations or rid in self.holds:
            raise HoldExists(rid)
        lease_until_ms = self._now_ms + cmd.lease_ms
        part = None
        if cmd.lines:
            part = self._plan_part(rid, cmd.lines, lease_until_ms, cmd.reference)
        remote = tuple(s for s in shards if s != cmd.home_shard)
        self._emit(
            ReservationOpened(rid, shards, remote, cmd.ttl_ms, lease_until_ms, cmd.reference)
        )
        if part is not None:
            self._emit(part)
        return self.reservation_view(self.reservations[rid], self._now_ms)

    def _activate_reservation(self, cmd: ActivateReservation) -> HoldView:
        reservation = self._existing_reservation(cmd.reservation_id)
        current = reservation.status_at(self._now_ms)
        if current is HoldStatus.ACTIVE:
            return self.reservation_view(reservation, self._now_ms)  # a repeat
        if current is not HoldStatus.PENDING:
            raise HoldNotActive(cmd.reservation_id, current.value)
        own = self.holds.get(cmd.reservation_id)
        lines = (own.lines if own is not None else ()) + tuple(_hold_lines(cmd.lines))
        expires_at_ms = self._now_ms + reservation.ttl_ms
        self._emit(ReservationActivated(cmd.reservation_id, expires_at_ms, lines))
        return self.reservation_view(reservation, self._now_ms)

    def _abort_reservation(self, cmd: AbortReservation) -> HoldView:
        """Only a pending reservation is aborted (also once its lease has passed)."""
        reservation = self._existing_reservation(cmd.reservation_id)
        if reservation.status is HoldStatus.PENDING:
            self._decide(reservation, HoldStatus.RELEASED)
        elif reservation.status is not HoldStatus.RELEASED:
            raise HoldNotActive(cmd.reservation_id, reservation.status_at(self._now_ms).value)
        return self.reservation_view(reservation, self._now_ms)

    def _finish_reservation(self, reservation: Reservation, status: HoldStatus) -> HoldView:
        """Commit or release by a client: only from active; a repeat changes nothing."""
        if reservation.status is status:
            return self.reservation_view(reservation, self._now_ms)
        current = reservation.status_at(self._now_ms)
        if current is not HoldStatus.ACTIVE:
            raise HoldNotActive(reservation.reservation_id, current.value)
        self._decide(reservation, status)
        return self.reservation_view(reservation, self._now_ms)

    def _extend_reservation(self, reservation: Reservation, ttl_ms: int) -> HoldView:
        current = reservation.status_at(self._now_ms)
        if current is not HoldStatus.ACTIVE:
            raise HoldNotActive(reservation.reservation_id, current.value)
        self._emit(ReservationExtended(reservation.reservation_id, self._now_ms + ttl_ms))
        return self.reservation_view(reservation, self._now_ms)

    def _expire_reservation(self, reservation: Reservation) -> None:
        """The timer's decision for a reservation past its deadline."""
        overdue = reservation.status_at(self._now_ms)
        assert overdue in (HoldStatus.RELEASED, HoldStatus.EXPIRED), overdue
        self._decide(reservation, overdue)

    def _decide(self, reservation: Reservation, status: HoldStatus) -> None:
        """The one decision: recorded with the home's own part finished in the same step; the
        remote shards are told afterwards (they are unsettled until they have applied it)."""
        self._emit(ReservationFinished(reservation.reservation_id, status))
        own = self.holds.get(reservation.reservation_id)
        if own is not None and own.status is HoldStatus.ACTIVE:
            self._emit(self._finished_event(own, status))

    def _mark_settled(self, cmd: MarkSettled) -> HoldView:
        reservation = self._existing_reservation(cmd.reservation_id)
        if cmd.shard_id in reservation.unsettled:
            self._emit(ReservationSettled(cmd.reservation_id, cmd.shard_id))
        return self.reservation_view(reservation, self._now_ms)

    # -- participant shard -----------------------------------------------------------------

    def _prepare_hold(self, cmd: PrepareHold) -> HoldView:
        check_hold_id(cmd.reservation_id)
        check_reference(cmd.reference)
        if not isinstance(cmd.lease_until_ms, int):
            raise InvalidCommand("lease_until_ms must be an integer")
        if cmd.reservation_id in self.holds:
            raise HoldExists(cmd.reservation_id)
        if cmd.lease_until_ms + PREPARE_CLOCK_SKEW_MS_MAX <= self._now_ms:
            # Late by more than any clock skew: the home has given the reservation up.
            raise HoldNotActive(cmd.reservation_id, HoldStatus.RELEASED.value)
        event = self._plan_part(cmd.reservation_id, cmd.lines, cmd.lease_until_ms, cmd.reference)
        self._emit(event)
        return self._part_view(cmd.reservation_id)

    def _settle_hold(self, cmd: SettleHold) -> HoldView:
        check_hold_id(cmd.reservation_id)
        try:
            status = HoldStatus(cmd.status)
        except ValueError:
            raise InvalidCommand(f"unknown status {cmd.status!r}") from None
        if status not in FINAL:
            raise InvalidCommand("a reservation settles as committed, released or expired")
        part = self.holds.get(cmd.reservation_id)
        if part is None:
            if status is HoldStatus.COMMITTED:
                raise HoldNotFound(cmd.reservation_id)
            # Told before its part arrived: leave a finished, empty part behind so that a
            # late PrepareHold for the same reservation is refused.
            rid = cmd.reservation_id
            self._emit(HoldPlaced(rid, (), self._now_ms, None, (), True))
            self._emit(HoldFinished(rid, status, ()))
            return self._part_view(rid)
        if not part.coordinated:
            raise InvalidCommand(f"hold {cmd.reservation_id} is not part of a reservation")
        if part.status is status:
            return self._part_view(cmd.reservation_id)  # a repeat
        if part.status is not HoldStatus.ACTIVE:
            raise HoldNotActive(cmd.reservation_id, part.status.value)
        self._emit(self._finished_event(part, status))
        return self._part_view(cmd.reservation_id)

    # -- helpers ---------------------------------------------------------------------------

    def _plan_part(
        self, rid: str, lines: Any, lease_until_ms: int, reference: str | None
    ) -> HoldPlaced:
        if not isinstance(lines, tuple | list) or not 0 < len(lines) <= LINES_PER_HOLD_MAX:
            raise InvalidCommand(f"a part has 1 to {LINES_PER_HOLD_MAX} lines")
        ttl_ms = max(lease_until_ms - self._now_ms, 1)
        planned = plan_hold(self, ReserveStock(rid, tuple(lines), ttl_ms, reference), self._now_ms)
        return planned._replace(expires_at_ms=lease_until_ms, coordinated=True)

    def _existing_reservation(self, reservation_id: str) -> Reservation:
        check_hold_id(reservation_id)
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            raise HoldNotFound(reservation_id)
        return reservation

    def _part_view(self, hold_id: str) -> HoldView:
        hold = self.holds[hold_id]
        return HoldView(
            hold_id,
            hold.status,
            hold.lines,
            hold.expires_at_ms,
            hold.reference,
            hold.created_at_ms,
            hold.finished_at_ms,
        )


def _shard_ids(raw: object) -> tuple[int, ...]:
    if not isinstance(raw, tuple | list) or not raw:
        raise InvalidCommand("shards must be a non-empty list of shard ids")
    ids = []
    for value in raw:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= SHARD_ID_MAX:
            raise InvalidCommand(f"shard ids are integers 0 to {SHARD_ID_MAX}")
        ids.append(value)
    if len(set(ids)) != len(ids):
        raise InvalidCommand("shard ids must be distinct")
    return tuple(sorted(ids))


def _hold_lines(raw: object) -> list[HoldLine]:
    if not isinstance(raw, tuple | list) or len(raw) > LINES_PER_HOLD_MAX:
        raise InvalidCommand(f"at most {LINES_PER_HOLD_MAX} lines")
    lines = []
    for line in raw:
        if not isinstance(line, tuple | list) or len(line) != 3:
            raise InvalidCommand("held lines are (sku, location, quantity)")
        lines.append(HoldLine(*line))
    return lines
