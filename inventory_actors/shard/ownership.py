"""What a shard checks before a command reaches its ledger: that the command is its own.

Callers route and shards check with the same function, `PartitionMap.owner`; a misrouted command
is refused (`NotOwner`) before anything is written. What each kind of command is checked by is in
docs/engine.md ("Ownership").
"""

from collections.abc import Callable, Iterable
from typing import Any

from inventory_actors.domain import (
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
from inventory_actors.shard.errors import NotOwner
from inventory_actors.shard.partitioning import PartitionMap, slots_of

# The kinds of command that name nothing a shard owns (see the module's docstring).
UNCHECKED: frozenset[type] = frozenset({SettleHold, ClaimKey, ExpireHolds, PruneHolds})

_Check = Callable[[Any], NotOwner | None]


class Ownership:
    """The check of one shard: a dict lookup per command, then `PartitionMap.owner` for each
    SKU and hold id it names (a CRC-32 or a parse of the id, well under a microsecond each)."""

    __slots__ = ("_checks", "_owner", "shard_id")

    def __init__(self, shard_id: int, partition: PartitionMap) -> None:
        if not 0 <= shard_id < partition.shard_count:
            raise ValueError(f"shard {shard_id} is not one of the map's {partition.shard_count}")
        self.shard_id = shard_id
        self._owner = partition.owner
        # One lookup by the command's exact type: the union has 18 kinds, and a chain of
        # isinstance tests would run most of them for the kinds near its end.
        self._checks: dict[type, _Check] = {
            AdjustStock: self._of_sku,
            SetStock: self._of_sku,
            TransferStock: self._of_sku,
            SetThreshold: self._of_sku,
            ReserveStock: self._reserve,
            CommitHold: self._of_hold,
            ReleaseHold: self._of_hold,
            ExtendHold: self._of_hold,
            OpenReservation: self._open,
            ActivateReservation: self._of_reservation,
            AbortReservation: self._of_reservation,
            MarkSettled: self._of_reservation,
            PrepareHold: self._prepare,
            RestockRows: self._restock,
        }

    @property
    def checked(self) -> frozenset[type]:
        """The kinds of command this check looks into."""
        return frozenset(self._checks)

    def refusal(self, command: Command) -> NotOwner | None:
        """Why this shard must not run `command`, or None when it may."""
        check = self._checks.get(type(command))
        return None if check is None else check(command)

    # -- by kind ---------------------------------------------------------------------------

    def _of_sku(
        self, command: AdjustStock | SetStock | TransferStock | SetThreshold
    ) -> NotOwner | None:
        return self._sku(command.sku)

    def _of_hold(self, command: CommitHold | ReleaseHold | ExtendHold) -> NotOwner | None:
        return self._hold(command.hold_id)

    def _of_reservation(
        self, command: ActivateReservation | AbortReservation | MarkSettled
    ) -> NotOwner | None:
        return self._hold(command.reservation_id)

    def _reserve(self, command: ReserveStock) -> NotOwner | None:
        return self._hold(command.hold_id) or self._lines(command.lines)

    def _open(self, command: OpenReservation) -> NotOwner | None:
        return self._hold(command.reservation_id) or self._lines(command.lines)

    def _prepare(self, command: PrepareHold) -> NotOwner | None:
        return self._lines(command.lines)

    def _restock(self, command: RestockRows) -> NotOwner | None:
        return self._rows(command.skus)

    # -- by key ----------------------------------------------------------------------------

    def _rows(self, skus: object) -> NotOwner | None:
        if not isinstance(skus, tuple | list):
            return None
        try:
            slots = slots_of(skus)
        except (AttributeError, UnicodeEncodeError):
            # Some row's SKU is not text (the ledger rejects that row): check them one by one.
            return self._each(skus)
        owner, shard_id = self._owner, self.shard_id
        if all(owner(slot=slot) == shard_id for slot in slots):
            return None
        return self._each(skus)  # names the first row's SKU that is not this shard's

    def _each(self, skus: Iterable[object]) -> NotOwner | None:
        for sku in skus:
            refusal = self._sku(sku)
            if refusal is not None:
                return refusal
        return None

    def _sku(self, sku: object) -> NotOwner | None:
        if not isinstance(sku, str):
            return None
        try:
            owner = self._owner(sku=sku)
        except UnicodeEncodeError:
            return None
        return None if owner == self.shard_id else NotOwner(self.shard_id, "SKU", sku, owner)

    def _hold(self, hold_id: object) -> NotOwner | None:
        if not isinstance(hold_id, str):
            return None
        try:
            owner = self._owner(hold=hold_id)
        except UnicodeEncodeError:
            return None
        if owner == self.shard_id:
            return None
        return NotOwner(self.shard_id, "reservation", hold_id, owner)

    def _lines(self, lines: object) -> NotOwner | None:
        if not isinstance(lines, tuple | list):
            return None
        for line in lines:
            # A LineRequest, whose first field is its SKU; anything else the ledger refuses.
            if isinstance(line, tuple) and line:
                refusal = self._sku(line[0])
                if refusal is not None:
                    return refusal
        return None
