"""Validation at the boundary (pydantic): the ids, quantities and limits of the API contract.

The HTTP layer parses bodies with these models; the Python client checks every command with
`validate_command` before it leaves the process. The domain checks again, as a last line.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from inventory_actors.domain import (
    AdjustStock,
    Command,
    CommitHold,
    ExtendHold,
    InvalidCommand,
    LineRequest,
    ReleaseHold,
    ReserveStock,
    SetStock,
    SetThreshold,
    TransferStock,
    limits,
)

ItemId = Annotated[str, StringConstraints(pattern=limits.ID_PATTERN)]
Quantity = Annotated[int, Field(gt=0, le=limits.QUANTITY_MAX, strict=True)]
Delta = Annotated[int, Field(ge=-limits.DELTA_MAX, le=limits.DELTA_MAX, strict=True)]
OnHand = Annotated[int, Field(ge=0, le=limits.ON_HAND_MAX, strict=True)]
Reason = Literal[
    "received", "restock", "returned", "correction", "cycle_count", "damaged", "shrinkage", "other"
]
Reference = Annotated[str, StringConstraints(max_length=limits.REFERENCE_LENGTH_MAX)]
TtlSeconds = Annotated[
    int, Field(ge=limits.TTL_MS_MIN // 1000, le=limits.TTL_MS_MAX // 1000, strict=True)
]
HoldId = Annotated[str, StringConstraints(min_length=1, max_length=limits.HOLD_ID_LENGTH_MAX)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdjustmentBody(_Body):
    location: ItemId
    delta: Delta
    reason: Reason
    reference: Reference | None = None

    def to_command(self, sku: str, expected_version: int | None = None) -> AdjustStock:
        if self.delta == 0:
            raise InvalidCommand("delta must not be 0")
        return AdjustStock(
            sku, self.location, self.delta, self.reason, self.reference, expected_version
        )


class CountBody(_Body):
    on_hand: OnHand
    reason: Reason = "cycle_count"
    reference: Reference | None = None

    def to_command(self, sku: str, location: str, expected_version: int | None = None) -> SetStock:
        return SetStock(sku, location, self.on_hand, self.reason, self.reference, expected_version)


class ThresholdBody(_Body):
    # Required, so an empty body is refused rather than read as "remove"; null removes.
    low_stock_below: OnHand | None

    def to_command(self, sku: str, location: str) -> SetThreshold:
        return SetThreshold(sku, location, self.low_stock_below)


class TransferBody(_Body):
    from_location: ItemId
    to_location: ItemId
    quantity: Quantity
    reference: Reference | None = None

    def to_command(self, sku: str, expected_version: int | None = None) -> TransferStock:
        return TransferStock(
            sku,
            self.from_location,
            self.to_location,
            self.quantity,
            self.reference,
            expected_version,
        )


class ReservationLineBody(_Body):
    sku: ItemId
    quantity: Quantity
    location: ItemId | None = None


class ReservationBody(_Body):
    lines: Annotated[
        list[ReservationLineBody], Field(min_length=1, max_length=limits.LINES_PER_HOLD_MAX)
    ]
    ttl_seconds: TtlSeconds = 900
    reference: Reference | None = None

    def to_command(self, hold_id: str) -> ReserveStock:
        lines = tuple(LineRequest(x.sku, x.quantity, x.location) for x in self.lines)
        return ReserveStock(hold_id, lines, self.ttl_seconds * 1000, self.reference)


class ExtendBody(_Body):
    ttl_seconds: TtlSeconds


def _whole_seconds(ttl_ms: object) -> int:
    if not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool) or ttl_ms % 1000:
        raise InvalidCommand("ttl must be in whole seconds")
    return ttl_ms // 1000


_SKU = TypeAdapter(ItemId)
_HOLD_ID = TypeAdapter(HoldId)


def _check_command(command: Command) -> None:
    match command:
        case AdjustStock(sku, location, delta, reason, reference, _):
            _SKU.validate_python(sku)
            AdjustmentBody.model_validate(
                {"location": location, "delta": delta, "reason": reason, "reference": reference}
            )
            if delta == 0:
                raise InvalidCommand("delta must not be 0")
        case SetStock(sku, location, on_hand, reason, reference, _):
            _SKU.validate_python(sku)
            _SKU.validate_python(location)
            CountBody.model_validate({"on_hand": on_hand, "reason": reason, "reference": reference})
        case TransferStock(sku, source, target, quantity, reference, _):
            _SKU.validate_python(sku)
            TransferBody(
                from_location=source, to_location=target, quantity=quantity, reference=reference
            )
            if source == target:
                raise InvalidCommand("from_location and to_location must differ")
        case ReserveStock(hold_id, lines, ttl_ms, reference):
            _HOLD_ID.validate_python(hold_id)
            if not isinstance(lines, tuple | list) or not all(
                isinstance(line, LineRequest) for line in lines
            ):
                raise InvalidCommand("lines must be LineRequest values")
            ReservationBody.model_validate(
                {
                    "lines": [line._asdict() for line in lines],
                    "ttl_seconds": _whole_seconds(ttl_ms),
                    "reference": reference,
                }
            )
        case SetThreshold(sku, location, low_stock_below):
            _SKU.validate_python(sku)
            _SKU.validate_python(location)
            ThresholdBody.model_validate({"low_stock_below": low_stock_below})
        case CommitHold(hold_id) | ReleaseHold(hold_id):
            _HOLD_ID.validate_python(hold_id)
        case ExtendHold(hold_id, ttl_ms):
            _HOLD_ID.validate_python(hold_id)
            ExtendBody(ttl_seconds=_whole_seconds(ttl_ms))
        case _:
            raise InvalidCommand(f"{type(command).__name__} cannot be sent by a client")


def validate_command(command: Command) -> None:
    """Raise InvalidCommand, with a readable reason, unless `command` is within the contract."""
    try:
        _check_command(command)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "value"
        raise InvalidCommand(f"{where}: {first['msg']}") from None
