"""Checks every command runs in the domain: the last line of defence behind the boundary."""

from inventory_actors.domain import limits
from inventory_actors.domain.errors import InvalidCommand


def check_id(field: str, value: object) -> None:
    if not limits.is_valid_id(value):
        raise InvalidCommand(f"{field} must be 1 to 128 characters from [A-Za-z0-9._:/-]")


def check_hold_id(value: object) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= limits.HOLD_ID_LENGTH_MAX:
        raise InvalidCommand(f"hold id must be 1 to {limits.HOLD_ID_LENGTH_MAX} characters")
    check_text("hold id", value)


def check_quantity(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidCommand("quantity must be an integer")
    if not 0 < value <= limits.QUANTITY_MAX:
        raise InvalidCommand(f"quantity must be > 0 and <= {limits.QUANTITY_MAX}")


def check_reason(value: object) -> None:
    if value not in limits.REASONS:
        raise InvalidCommand(f"reason must be one of {sorted(limits.REASONS)}")


def check_reference(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or len(value) > limits.REFERENCE_LENGTH_MAX:
        raise InvalidCommand(f"reference must be a string of <= {limits.REFERENCE_LENGTH_MAX}")
    check_text("reference", value)


def check_text(field: str, value: str) -> None:
    """Text must be valid Unicode (no lone surrogates), or no store can write it."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidCommand(f"{field} is not valid Unicode text") from None


def check_ttl_ms(value: object) -> None:
    if not isinstance(value, int) or not limits.TTL_MS_MIN <= value <= limits.TTL_MS_MAX:
        raise InvalidCommand(
            f"ttl must be between {limits.TTL_MS_MIN // 1000} and {limits.TTL_MS_MAX // 1000} s"
        )
