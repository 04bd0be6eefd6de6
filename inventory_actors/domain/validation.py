"""Checks every command runs in the domain: the last line of defence behind the boundary."""

from inventory_actors.domain.errors import InvalidCommand
from inventory_actors.domain.limits import (
    HOLD_ID_LENGTH_MAX,
    QUANTITY_MAX,
    REASONS,
    REFERENCE_LENGTH_MAX,
    TTL_MS_MAX,
    TTL_MS_MIN,
    is_valid_id,
)


def check_id(field: str, value: object) -> None:
    if not is_valid_id(value):
        raise InvalidCommand(f"{field} must be 1 to 128 characters from [A-Za-z0-9._:/-]")


def check_hold_id(value: object) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= HOLD_ID_LENGTH_MAX:
        raise InvalidCommand(f"hold id must be 1 to {HOLD_ID_LENGTH_MAX} characters")
    check_text("hold id", value)


def check_quantity(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidCommand("quantity must be an integer")
    if not 0 < value <= QUANTITY_MAX:
        raise InvalidCommand(f"quantity must be > 0 and <= {QUANTITY_MAX}")


def check_reason(value: object) -> None:
    if value not in REASONS:
        raise InvalidCommand(f"reason must be one of {sorted(REASONS)}")


def check_reference(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or len(value) > REFERENCE_LENGTH_MAX:
        raise InvalidCommand(f"reference must be a string of <= {REFERENCE_LENGTH_MAX}")
    check_text("reference", value)


def check_text(field: str, value: str) -> None:
    """Text must be valid Unicode (no lone surrogates), or no store can write it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCommand(f"{field} is not valid Unicode text") from None


def check_ttl_ms(value: object) -> None:
    if not isinstance(value, int) or not TTL_MS_MIN <= value <= TTL_MS_MAX:
        raise InvalidCommand(f"ttl must be between {TTL_MS_MIN // 1000} and {TTL_MS_MAX // 1000} s")
