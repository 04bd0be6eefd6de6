"""The ledger of one shard: commands in, a result and events out, or a domain error.

A handler validates everything before its first `_emit`; an error raised after that would leave
a half-applied command, which `execute` turns into an `InvariantViolation`. Emitting applies the
event at once, so a command that changes several things sees its own earlier changes.
"""

from collections.abc import Callable
from typing import Any

from inventory_actors.domain.commands import (
    AbortReservation,
    ActivateReservation,
    AdjustStock,
    ClaimKey,
    Command,
    CommitHold,
    ExpireHolds,
    ExtendHold,
    MarkSettled,
    OpenReservation,
    PrepareHold,
    PruneHolds,
    ReleaseHold,
    ReserveStock,
    RestockRows,
    SetStock,
    SetThreshold,
    SettleHold,
    TransferStock,
)
from inventory_actors.domain.coordination import CoordinationHandlers
from inventory_actors.domain.crossings import CrossingHandlers
from inventory_actors.domain.errors import (
    DomainError,
    HoldExists,
    HoldNotActive,
    HoldNotFound,
    InsufficientStock,
    InvalidCommand,
    InvariantViolation,
    Shortage,
    VersionConflict,
)
from inventory_actors.domain.events import (
    Event,
    HoldExtended,
    HoldFinished,
    HoldLine,
    HoldsPruned,
    HoldStatus,
    LevelImage,
    StockAdjusted,
    StockSet,
    StockTransferred,
)
from inventory_actors.domain.limits import (
    DELTA_MAX,
    EXPIRE_PER_COMMAND_MAX,
    HOLD_ID_LENGTH_MAX,
    ON_HAND_MAX,
    PRUNE_PER_COMMAND_MAX,
    TTL_MS_MAX,
    TTL_MS_MIN,
)
from inventory_actors.domain.records import Hold
from inventory_actors.domain.reservations import plan_hold
from inventory_actors.domain.restock import apply_restock, check_restock
from inventory_actors.domain.state import LedgerState
from inventory_actors.domain.validation import (
    check_hold_id,
    check_id,
    check_quantity,
    check_reason,
    check_reference,
    check_ttl_ms,
)
from inventory_actors.domain.views import (
    ExpiryResult,
    HoldView,
    KeyClaimed,
    PruneResult,
    RestockResult,
    Result,
    SkuView,
)

HOLD_ID_MAX = HOLD_ID_LENGTH_MAX
# tuple.__new__ skips the Python-level __new__ of a named tuple, for values built once per command.
_new = tuple.__new__


class Ledger(CoordinationHandlers, CrossingHandlers, LedgerState):
    """One shard's stock and holds, changed only by `execute` (live) or `apply` (replay)."""

    def __init__(self) -> None:
        super().__init__()
        self._emitted: list[Event] = []
        self._now_ms = 0
        self._handlers: dict[type, Callable[[Any], Result]] = {
            AdjustStock: self._adjust,
            SetStock: self._set,
            TransferStock: self._transfer,
            ReserveStock: self._reserve,
            CommitHold: self._commit,
            ReleaseHold: self._release,
            ExtendHold: self._extend,
            ExpireHolds: self._expire,
            PruneHolds: self._prune,
            OpenReservation: self._open_reservation,
            PrepareHold: self._prepare_hold,
            ActivateReservation: self._activate_reservation,
            AbortReservation: self._abort_reservation,
            SettleHold: self._settle_hold,
            MarkSettled: self._mark_settled,
            ClaimKey: self._claim_key,
            RestockRows: self._restock,
            SetThreshold: self._set_threshold,
        }

    def execute(self, command: Command, now_ms: int) -> tuple[Result, list[Event]]:
        """Run one command at time `now_ms`. Raises a DomainError and changes nothing, or
        returns the result and the events it applied."""
        handler = self._handlers.get(type(command))
        if handler is None:
            raise InvalidCommand(f"unknown command {type(command).__name__}")
        self._emitted = []
        self._now_ms = now_ms
        try:
            result = handler(command)
            # Here, after the handler, so every path that changes levels is covered (restocks
            # and holds append their events without `_emit`); free without thresholds.
            if self.thresholds and self._emitted:
                self._emit_crossings()
        except DomainError:
            if self._emitted:
                raise InvariantViolation("a command failed after changing state") from None
            raise
        except (TypeError, ValueError, AttributeError) as error:
            # A malformed command that slipped past the boundary: harmless while nothing was
            # emitted; a bug otherwise.
            if self._emitted:
                raise InvariantViolation(
                    f"a command failed after changing state: {error}"
                ) from error
            raise InvalidCommand(f"malformed {type(command).__name__}: {error}") from None
        return result, self._emitted

    def _emit(self, event: Event) -> None:
        self.apply(event, self._now_ms)
        self._emitted.append(event)

    # -- stock -----------------------------------------------------------------------------

    def _adjust(self, cmd: AdjustStock) -> SkuView:
        check_id("sku", cmd.sku)
        check_id("location", cmd.location)
        check_reason(cmd.reason)
        check_reference(cmd.reference)
        delta = cmd.delta
        if not isinstance(delta, int) or isinstance(delta, bool) or not 0 < abs(delta) <= DELTA_MAX:
            raise InvalidCommand(f"delta must be a non-zero integer within ±{DELTA_MAX}")
        version = self._check_version(cmd.sku, cmd.expected_version)
        on_hand, reserved = self._level_values(cmd.sku, cmd.location)
        after = on_hand + cmd.delta
        if after < reserved:
            shortage = Shortage(cmd.sku, cmd.location, -cmd.delta, on_hand - reserved)
            raise InsufficientStock((shortage,))
        self._check_ceiling(after)
        image = LevelImage(cmd.sku, cmd.location, after, reserved, version + 1)
        self._emit(StockAdjusted(image, cmd.delta, cmd.reason, cmd.reference))
        return self._view(cmd.sku)

    def _set(self, cmd: SetStock) -> SkuView:
        check_id("sku", cmd.sku)
        check_id("location", cmd.location)
        check_reason(cmd.reason)
        check_reference(cmd.reference)
        if not isinstance(cmd.on_hand, int) or isinstance(cmd.on_hand, bool) or cmd.on_hand < 0:
            raise InvalidCommand("on_hand must be an integer >= 0")
        self._check_ceiling(cmd.on_hand)
        version = self._check_version(cmd.sku, cmd.expected_version)
        on_hand, reserved = self._level_values(cmd.sku, cmd.location)
        if cmd.on_hand < reserved:
            shortage = Shortage(cmd.sku, cmd.location, reserved, cmd.on_hand)
            raise InsufficientStock((shortage,))
        image = LevelImage(cmd.sku, cmd.location, cmd.on_hand, reserved, version + 1)
        self._emit(StockSet(image, on_hand, cmd.reason, cmd.reference))
        return self._view(cmd.sku)

    def _restock(self, cmd: RestockRows) -> RestockResult:
        check_restock(cmd)
        try:
            event, result = apply_restock(self, cmd)
        except Exception as error:
            # Rows may have been applied: the shard must rebuild its memory from disk.
            raise InvariantViolation(f"restock failed part way: {error!r}") from error
        if event.rows:
            self._emitted.append(event)  # applied row by row already (see domain.restock)
        return result

    def _transfer(self, cmd: TransferStock) -> SkuView:
        check_id("sku", cmd.sku)
        check_id("from_location", cmd.from_location)
        check_id("to_location", cmd.to_location)
        check_quantity(cmd.quantity)
        check_reference(cmd.reference)
        if cmd.from_location == cmd.to_location:
            raise InvalidCommand("from_location and to_location must differ")
        version = self._check_version(cmd.sku, cmd.expected_version)
        source_on_hand, source_reserved = self._level_values(cmd.sku, cmd.from_location)
        if source_on_hand - source_reserved < cmd.quantity:
            available = source_on_hand - source_reserved
            raise InsufficientStock(
                (Shortage(cmd.sku, cmd.from_location, cmd.quantity, available),)
            )
        target_on_hand, target_reserved = self._level_values(cmd.sku, cmd.to_location)
        self._check_ceiling(target_on_hand + cmd.quantity)
        source = LevelImage(
            cmd.sku, cmd.from_location, source_on_hand - cmd.quantity, source_reserved, version + 1
        )
        target = LevelImage(
            cmd.sku, cmd.to_location, target_on_hand + cmd.quantity, target_reserved, version + 1
        )
        self._emit(StockTransferred(source, target, cmd.quantity, cmd.reference))
        return self._view(cmd.sku)

    # -- holds -----------------------------------------------------------------------------

    def _reserve(self, cmd: ReserveStock) -> Result:
        hold_id, _, ttl_ms, reference = cmd
        # The checks run once per reservation: skip the calls when the value is plainly fine.
        if type(hold_id) is not str or not hold_id.isascii() or not 0 < len(hold_id) <= HOLD_ID_MAX:
            check_hold_id(hold_id)
        if type(ttl_ms) is not int or not TTL_MS_MIN <= ttl_ms <= TTL_MS_MAX:
            check_ttl_ms(ttl_ms)
        if reference is not None:
            check_reference(reference)
        if hold_id in self.holds:
            raise HoldExists(hold_id)
        event = plan_hold(self, cmd, self._now_ms)
        self._emitted.append(event)
        self._apply_placed(event, self._now_ms)
        view = (hold_id, HoldStatus.ACTIVE, event.lines, event.expires_at_ms, reference)
        return _new(HoldView, (*view, self._now_ms, None))

    def _commit(self, cmd: CommitHold) -> Result:
        return self._finish(cmd.hold_id, HoldStatus.COMMITTED)

    def _release(self, cmd: ReleaseHold) -> Result:
        return self._finish(cmd.hold_id, HoldStatus.RELEASED)

    def _finish(self, hold_id: str, status: HoldStatus) -> Result:
        reservation = self.reservations.get(hold_id)
        if reservation is not None:
            return self._finish_reservation(reservation, status)
        hold = self._existing_hold(hold_id)
        current = self.status_at(hold, self._now_ms)
        if current is status:
            return self._hold_result(hold_id)  # repeating a finish changes nothing
        if current is not HoldStatus.ACTIVE:
            raise HoldNotActive(hold_id, current.value)
        self._emit(self._finished_event(hold, status))
        return self._hold_result(hold_id)

    def _extend(self, cmd: ExtendHold) -> Result:
        check_ttl_ms(cmd.ttl_ms)
        reservation = self.reservations.get(cmd.hold_id)
        if reservation is not None:
            return self._extend_reservation(reservation, cmd.ttl_ms)
        hold = self._existing_hold(cmd.hold_id)
        current = self.status_at(hold, self._now_ms)
        if current is not HoldStatus.ACTIVE:
            raise HoldNotActive(cmd.hold_id, current.value)
        self._emit(HoldExtended(cmd.hold_id, self._now_ms + cmd.ttl_ms))
        return self._hold_result(cmd.hold_id)

    def _claim_key(self, cmd: ClaimKey) -> KeyClaimed:
        """Nothing changes: the shard core records the key with the command's fingerprint."""
        if type(cmd.shard_id) is not int or cmd.shard_id < 0:
            raise InvalidCommand("shard_id must be a non-negative integer")
        return KeyClaimed(cmd.shard_id)

    def _expire(self, cmd: ExpireHolds) -> ExpiryResult:
        limit = min(max(cmd.limit, 0), EXPIRE_PER_COMMAND_MAX)
        expired = 0
        while expired < limit:
            due_ms = self.next_expiry_ms()
            if due_ms is None or due_ms > self._now_ms:
                break
            _, hold_id = self.expiry_heap[0]
            reservation = self.reservations.get(hold_id)
            if reservation is not None:
                self._expire_reservation(reservation)
            else:
                self._emit(self._finished_event(self.holds[hold_id], HoldStatus.EXPIRED))
            expired += 1
        return ExpiryResult(expired)

    def _prune(self, cmd: PruneHolds) -> PruneResult:
        limit = min(max(cmd.limit, 0), PRUNE_PER_COMMAND_MAX)
        pruned: list[str] = []
        chosen: set[str] = set()
        while self.finished and len(pruned) < limit:
            finished_at_ms, hold_id = self.finished[0]
            if finished_at_ms >= cmd.finished_before_ms:
                break
            self.finished.popleft()
            if hold_id in chosen:
                continue
            reservation = self.reservations.get(hold_id)
            if reservation is not None:
                if reservation.status in (HoldStatus.PENDING, HoldStatus.ACTIVE):
                    continue
                if reservation.unsettled:
                    # Forgotten only once every shard applied the decision: look again later.
                    self.finished.append((self._now_ms, hold_id))
                    continue
                chosen.add(hold_id)
                pruned.append(hold_id)
                continue
            hold = self.holds.get(hold_id)
            if hold is not None and hold.status is not HoldStatus.ACTIVE:
                chosen.add(hold_id)
                pruned.append(hold_id)
        if pruned:
            self._emit(HoldsPruned(tuple(pruned)))
        return PruneResult(len(pruned))

    def _finished_event(self, hold: Hold, status: HoldStatus) -> HoldFinished:
        """The post-images of a hold leaving `active`: a commit also takes units off on_hand."""
        sold = status is HoldStatus.COMMITTED
        images = self.images_after(hold.lines, -1, sold)
        return HoldFinished(hold.hold_id, status, images, hold.lines)

    def images_after(
        self, lines: tuple[HoldLine, ...], sign: int, sold: bool = False
    ) -> tuple[LevelImage, ...]:
        """Post-images of moving `lines` into (sign 1) or out of (sign -1) `reserved`; each SKU's
        version rises once."""
        changes: dict[tuple[str, str], int] = {}
        for line in lines:
            key = (line.sku, line.location)
            changes[key] = changes.get(key, 0) + line.quantity
        images = []
        for (sku_id, location), quantity in changes.items():
            sku = self.skus[sku_id]
            level = sku.levels[location]
            on_hand = level.on_hand - quantity if sold else level.on_hand
            images.append(
                LevelImage(
                    sku_id, location, on_hand, level.reserved + sign * quantity, sku.version + 1
                )
            )
        return tuple(images)

    # -- helpers ---------------------------------------------------------------------------

    def _existing_hold(self, hold_id: str) -> Hold:
        check_hold_id(hold_id)
        hold = self.holds.get(hold_id)
        if hold is None:
            raise HoldNotFound(hold_id)
        if hold.coordinated:
            # A shard's part of a reservation across shards ends only by its home's decision.
            raise InvalidCommand(f"{hold_id} is part of a reservation: ask its home shard")
        return hold

    def _hold_result(self, hold_id: str) -> Result:
        view = self.hold_view(hold_id, self._now_ms)
        assert view is not None
        return view

    def _view(self, sku_id: str) -> SkuView:
        view = self.sku_view(sku_id)
        assert view is not None
        return view

    def _level_values(self, sku_id: str, location: str) -> tuple[int, int]:
        sku = self.skus.get(sku_id)
        level = None if sku is None else sku.levels.get(location)
        return (0, 0) if level is None else (level.on_hand, level.reserved)

    def _check_version(self, sku_id: str, expected: int | None) -> int:
        sku = self.skus.get(sku_id)
        actual = 0 if sku is None else sku.version
        if expected is not None and expected != actual:
            raise VersionConflict(sku_id, expected, actual)
        return actual

    @staticmethod
    def _check_ceiling(on_hand: int) -> None:
        if on_hand > ON_HAND_MAX:
            raise InvalidCommand(f"on_hand would exceed {ON_HAND_MAX}")
