"""Restock rows: what a restock command does to a shard's stock, row by row.

Each row is applied or rejected on its own, in order, so a later row of a level sees the earlier
ones. A restock changes the stock while it decides (docs/restock.md, How a job runs); the event
it returns holds exactly the values it set, and replay applies that event."""

from typing import Protocol

from inventory_actors.domain.commands import RestockRows
from inventory_actors.domain.errors import InvalidCommand
from inventory_actors.domain.events import StockRestocked
from inventory_actors.domain.limits import (
    DELTA_MAX,
    ON_HAND_MAX,
    REASONS,
    RESTOCK_MODES,
    RESTOCK_ROWS_PER_COMMAND_MAX,
    is_valid_id,
)
from inventory_actors.domain.records import Level, Sku
from inventory_actors.domain.validation import check_id
from inventory_actors.domain.views import RestockResult

BAD_SKU = "sku: must be 1 to 128 characters from [A-Za-z0-9._:/-]"
BAD_LOCATION = "location: must be 1 to 128 characters from [A-Za-z0-9._:/-]"
BAD_REASON = f"reason: must be one of {', '.join(sorted(REASONS))}"
NOT_INTEGER = "quantity: must be an integer"
BAD_DELTA = f"quantity: must be a non-zero integer within ±{DELTA_MAX} in delta mode"
BAD_COUNT = f"quantity: must be 0 to {ON_HAND_MAX} in set mode"
CEILING = f"on_hand would exceed {ON_HAND_MAX}"


def check_restock(cmd: RestockRows) -> None:
    """The command's own shape; its rows are checked one by one while planning."""
    check_id("job_id", cmd.job_id)
    if not isinstance(cmd.chunk, int) or isinstance(cmd.chunk, bool) or cmd.chunk < 0:
        raise InvalidCommand("chunk must be an integer >= 0")
    if cmd.mode not in RESTOCK_MODES:
        raise InvalidCommand(f"mode must be one of {sorted(RESTOCK_MODES)}")
    size = len(cmd.rows)
    columns = (cmd.skus, cmd.locations, cmd.quantities, cmd.reasons)
    if any(len(column) != size for column in columns):
        raise InvalidCommand("restock columns must have one entry per row")
    if size > RESTOCK_ROWS_PER_COMMAND_MAX:
        raise InvalidCommand(
            f"a restock command carries at most {RESTOCK_ROWS_PER_COMMAND_MAX} rows"
        )


class _Stock(Protocol):
    skus: dict[str, Sku]
    location_names: dict[str, str]
    level_count: int

    def shared_name(self, name: str) -> str: ...


def apply_restock(stock: _Stock, cmd: RestockRows) -> tuple[StockRestocked, RestockResult]:
    """Apply `cmd`'s good rows to `stock`; the event of what changed and the rejected rows.
    The command's shape must have been checked (`check_restock`)."""
    delta = cmd.mode == "delta"
    low, high = (-DELTA_MAX, DELTA_MAX) if delta else (0, ON_HAND_MAX)
    skus, locations, reasons_allowed = stock.skus, stock.location_names, REASONS
    valid_id, ceiling = is_valid_id, ON_HAND_MAX
    # The rows, SKUs, locations and reasons of the event are the command's own, less rejects:
    # only the computed columns are built row by row.
    computed: tuple[list[int], ...] = ([], [], [], [])
    before_col, after_col, reserved_col, version_col = computed
    # (index, row, reason) of each rejected row.
    rejected: list[tuple[int, int, str]] = []
    columns = (cmd.rows, cmd.skus, cmd.locations, cmd.quantities, cmd.reasons)
    for index, (row, sku_id, location, quantity, reason) in enumerate(zip(*columns, strict=True)):
        # Every check inline: a call per check costs more than the check.
        problem = None
        sku = skus.get(sku_id)
        level = None if sku is None else sku.levels.get(location)
        # A SKU or location the shard already holds was checked when it first arrived.
        if level is None:
            if sku is None and not valid_id(sku_id):
                problem = BAD_SKU
            elif location not in locations and not valid_id(location):
                problem = BAD_LOCATION
        if problem is None:
            if type(quantity) is not int:  # bools are ints to isinstance, not here
                problem = NOT_INTEGER
            elif not low <= quantity <= high or (delta and quantity == 0):
                problem = BAD_DELTA if delta else BAD_COUNT
            elif reason not in reasons_allowed:
                problem = BAD_REASON
        if problem is None:
            before, reserved = (0, 0) if level is None else (level.on_hand, level.reserved)
            after = before + quantity if delta else quantity
            if after < reserved:
                problem = f"insufficient-stock: on_hand {after} below reserved {reserved}"
            elif after > ceiling:
                problem = CEILING
        if problem is not None:
            rejected.append((index, row, problem))
            continue
        if sku is None:
            sku = skus[sku_id] = Sku(0)
        if level is None:
            sku.levels[stock.shared_name(location)] = Level(after, 0)
            stock.level_count += 1
        else:
            level.on_hand = after
        sku.version = version = sku.version + 1
        before_col.append(before)
        after_col.append(after)
        reserved_col.append(reserved)
        version_col.append(version)
    rejects = tuple([(row, problem) for _, row, problem in rejected])
    result = RestockResult(cmd.job_id, cmd.chunk, len(after_col), rejects)
    return _event(cmd, [index for index, _, _ in rejected], computed), result


def _event(
    cmd: RestockRows, rejected: list[int], computed: tuple[list[int], ...]
) -> StockRestocked:
    given = (cmd.rows, cmd.skus, cmd.locations, cmd.reasons)
    rows, sku_ids, location_ids, reasons = _without(given, rejected) if rejected else given
    before, after, reserved, versions = (tuple(column) for column in computed)
    return StockRestocked(
        cmd.job_id,
        cmd.chunk,
        cmd.mode,
        rows,  # type: ignore[arg-type]
        sku_ids,  # type: ignore[arg-type]
        location_ids,  # type: ignore[arg-type]
        before,
        after,
        reserved,
        versions,
        reasons,  # type: ignore[arg-type]
    )


def _without(
    columns: tuple[tuple[object, ...], ...], rejected: list[int]
) -> tuple[tuple[object, ...], ...]:
    """`columns` less the entries at the `rejected` indexes (ascending)."""
    drop = set(rejected)
    keep = [i for i in range(len(columns[0])) if i not in drop]
    return tuple(tuple([column[i] for i in keep]) for column in columns)
