"""Where a hold's units come from: summing lines, choosing locations, finding shortages."""

from typing import Protocol

from inventory_actors.domain.commands import ReserveStock
from inventory_actors.domain.errors import InsufficientStock, InvalidCommand, Shortage
from inventory_actors.domain.events import HoldLine, HoldPlaced, LevelImage
from inventory_actors.domain.limits import LINES_PER_HOLD_MAX, QUANTITY_MAX
from inventory_actors.domain.records import Level, Sku
from inventory_actors.domain.validation import check_id, check_quantity

_new = tuple.__new__


class _Stock(Protocol):
    skus: dict[str, Sku]

    def images_after(
        self, lines: tuple[HoldLine, ...], sign: int, sold: bool = False
    ) -> tuple[LevelImage, ...]: ...


def plan_hold(stock: _Stock, cmd: ReserveStock, now_ms: int) -> HoldPlaced:
    """The event that places `cmd`'s hold, or InsufficientStock naming every short line.

    Lines of one SKU (and location) are summed before checking. A line without a location is
    served whole from the location with the most units available after the explicit lines of
    the same SKU; ties go to the location whose name sorts first.
    """
    if len(cmd.lines) == 1:
        return _plan_single_line(stock, cmd, now_ms)
    pinned, floating = _sum_lines(cmd)
    shortages: list[Shortage] = []
    for (sku, location), quantity in pinned.items():
        available = _available(stock, sku, location)
        if quantity > available:
            shortages.append(Shortage(sku, location, quantity, available))
    chosen: dict[tuple[str, str], int] = dict(pinned)
    for sku, quantity in floating.items():
        best, available = _best_location(stock, sku, pinned)
        if best is None or quantity > available:
            shortages.append(Shortage(sku, None, quantity, available))
            continue
        key = (sku, best)
        chosen[key] = chosen.get(key, 0) + quantity
    if shortages:
        raise InsufficientStock(tuple(shortages))
    lines = tuple(HoldLine(sku, location, quantity) for (sku, location), quantity in chosen.items())
    images = stock.images_after(lines, 1)
    return HoldPlaced(cmd.hold_id, lines, now_ms + cmd.ttl_ms, cmd.reference, images)


def _plan_single_line(stock: _Stock, cmd: ReserveStock, now_ms: int) -> HoldPlaced:
    """The common cart line, without the bookkeeping of summing: same events as the general
    path (property-tested).

    It runs once per reservation, so it avoids calls where it can: a SKU or location already
    in the state was validated when it was created, so only unknown ids are checked here.
    """
    sku_id, quantity, requested = cmd.lines[0]
    sku = stock.skus.get(sku_id) if isinstance(sku_id, str) else None
    if sku is None:
        check_id("sku", sku_id)
    if type(quantity) is not int or not 0 < quantity <= QUANTITY_MAX:
        check_quantity(quantity)
    level: Level | None = None
    location = requested
    if requested is None:
        if sku is not None:
            location, level = _best_level(sku)
    elif sku is not None and isinstance(requested, str):
        level = sku.levels.get(requested)
    if level is None and requested is not None:
        check_id("location", requested)
    available = 0 if level is None else max(level.on_hand - level.reserved, 0)
    if sku is None or level is None or location is None or quantity > available:
        raise InsufficientStock((Shortage(sku_id, requested, quantity, available),))
    # tuple.__new__ skips the Python-level __new__ of a named tuple: the fields are all here.
    image = _new(
        LevelImage, (sku_id, location, level.on_hand, level.reserved + quantity, sku.version + 1)
    )
    held = (_new(HoldLine, (sku_id, location, quantity)),)
    return _new(
        HoldPlaced, (cmd.hold_id, held, now_ms + cmd.ttl_ms, cmd.reference, (image,), False)
    )


def _best_level(sku: Sku) -> tuple[str | None, Level | None]:
    """The location with the most units available; ties go to the name that sorts first."""
    levels = sku.levels
    if len(levels) == 1:
        for name, level in levels.items():
            return name, level
    best_name: str | None = None
    best: Level | None = None
    best_available = 0
    for name, level in levels.items():
        available = level.on_hand - level.reserved
        if (
            best_name is None
            or available > best_available
            or (available == best_available and name < best_name)
        ):
            best_name, best, best_available = name, level, available
    return best_name, best


def _sum_lines(cmd: ReserveStock) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    if not isinstance(cmd.lines, tuple | list) or not cmd.lines:
        raise InvalidCommand("a hold needs at least one line")
    if len(cmd.lines) > LINES_PER_HOLD_MAX:
        raise InvalidCommand(f"a hold has at most {LINES_PER_HOLD_MAX} lines")
    pinned: dict[tuple[str, str], int] = {}
    floating: dict[str, int] = {}
    for line in cmd.lines:
        check_id("sku", line.sku)
        check_quantity(line.quantity)
        if line.location is None:
            floating[line.sku] = floating.get(line.sku, 0) + line.quantity
        else:
            check_id("location", line.location)
            key = (line.sku, line.location)
            pinned[key] = pinned.get(key, 0) + line.quantity
    return pinned, floating


def _available(stock: _Stock, sku_id: str, location: str) -> int:
    sku = stock.skus.get(sku_id)
    level = None if sku is None else sku.levels.get(location)
    return 0 if level is None else level.on_hand - level.reserved


def _best_location(
    stock: _Stock, sku_id: str, pinned: dict[tuple[str, str], int]
) -> tuple[str | None, int]:
    sku = stock.skus.get(sku_id)
    if sku is None:
        return None, 0
    best_name: str | None = None
    best_available = 0
    for name, level in sku.levels.items():
        available = level.on_hand - level.reserved
        if pinned:
            available -= pinned.get((sku_id, name), 0)
        if (
            best_name is None
            or available > best_available
            or (available == best_available and name < best_name)
        ):
            best_name, best_available = name, available
    return best_name, max(best_available, 0)
