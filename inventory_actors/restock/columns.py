"""Vectorized checks of one column of a restock file: ids and quantities, a chunk at a time.

Every function takes and returns whole pyarrow arrays; none loops over rows. A mask is a
boolean array without nulls, true where the row has the problem.
"""

import re
from typing import Any, Final, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from inventory_actors.domain.limits import DELTA_MAX, ID_PATTERN, ON_HAND_MAX

# A quantity beyond this is out of range in every mode, and it still fits an int64 exactly.
QUANTITY_HUGE: Final = 10**18
QUANTITY_DIGITS_MAX: Final = 18
assert max(DELTA_MAX, ON_HAND_MAX) < QUANTITY_HUGE


def _id_shape(pattern: str) -> tuple[bytes, int, int]:
    """The id pattern's characters (as bytes) and length bounds. Taken apart so the common case
    can be checked without a regex match per row; the pattern stays the one definition."""
    shape = re.fullmatch(r"\^(\[[^\]]+\])\{(\d+),(\d+)\}\$", pattern)
    assert shape is not None, f"the id pattern is no longer ^[...]{{m,n}}$: {pattern}"
    character = re.compile(shape[1])
    allowed = bytes(b for b in range(256) if character.fullmatch(chr(b)))
    assert allowed.isascii(), "a non-ASCII id character would need more than one byte"
    return allowed, int(shape[2]), int(shape[3])


_ID_BYTES, ID_LENGTH_MIN, ID_LENGTH_MAX = _id_shape(ID_PATTERN)
_INTEGER_BYTES: Final = b"0123456789-"
# Arrow's string -> int cast takes neither a `+` nor spaces (and does take "0x10"), so text
# that is not only digits and `-` is checked against this pattern first.
_INTEGER_TEXT_PATTERN: Final = r"^[+-]?[0-9]+$"


class Quantities(NamedTuple):
    """A quantity column judged: three masks and the value (0 wherever a mask is set)."""

    missing: Any
    not_an_integer: Any
    huge: Any
    value: Any

    def usable(self) -> Any:
        """Where the value is the row's quantity."""
        return pc.invert(pc.or_(pc.or_(self.missing, self.not_an_integer), self.huge))


def type_problem(column: str, data_type: Any) -> str | None:
    """Why a column of this type cannot be judged, or None when it can."""
    if pa.types.is_dictionary(data_type):
        data_type = data_type.value_type
    fits = pa.types.is_null(data_type) or is_text_type(data_type)
    if column == "quantity":
        fits = fits or pa.types.is_integer(data_type) or pa.types.is_floating(data_type)
        fits = fits or pa.types.is_decimal(data_type)
    return None if fits else f"{column}: a column of type {data_type} cannot be read"


def is_text_type(data_type: Any) -> bool:
    return bool(
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    )


def decoded(column: Any) -> Any:
    """A dictionary-encoded array as a plain one (the checks below want plain arrays). Text
    becomes `string` first: Arrow cannot take from every text type (string_view)."""
    if not pa.types.is_dictionary(column.type):
        return column
    values = column.dictionary
    if is_text_type(values.type):
        values = pc.cast(values, pa.string())
    return pc.take(values, column.indices)


def falses(length: int) -> Any:
    return pc.fill_null(pa.nulls(length, pa.bool_()), False)


def missing_text(text: Any) -> Any:
    """Null or empty."""
    return pc.fill_null(pc.equal(pc.binary_length(text), 0), True)


def not_an_id(text: Any) -> Any:
    """Present but not an id of the contract (ID_PATTERN). Null rows are not flagged."""
    if _only_bytes_of(text, _ID_BYTES):
        # Every character is an id character: only the length is left to check. This is a
        # tenth of the cost of a regex match per row, and files are nearly always clean.
        length = pc.binary_length(text)
        long_enough = pc.greater_equal(length, ID_LENGTH_MIN)
        fits = pc.and_(long_enough, pc.less_equal(length, ID_LENGTH_MAX))
    else:
        fits = pc.match_substring_regex(text, ID_PATTERN)
    return pc.invert(pc.fill_null(fits, True))


def _only_bytes_of(text: Any, allowed: bytes) -> bool:
    """True when the string array's values (all together) hold no byte outside `allowed`: one
    C pass (bytes.translate) over the chunk's bytes instead of one call per row."""
    assert pa.types.is_string(text.type), "int32 offsets are read below"
    if len(text) == 0 or text.buffers()[2] is None:
        return True
    _, offsets_buffer, data_buffer = text.buffers()
    offsets = pa.Array.from_buffers(
        pa.int32(), len(text) + 1, [None, offsets_buffer], offset=text.offset
    )
    first_byte, end_byte = offsets[0].as_py(), offsets[len(text)].as_py()
    values = data_buffer.slice(first_byte, end_byte - first_byte).to_pybytes()
    return not values.translate(None, allowed)


def judge_quantities(column: Any) -> Quantities:
    """Any integer, float, decimal or text column as int64 values plus what is wrong."""
    column = decoded(column)
    data_type = column.type
    if pa.types.is_null(data_type):
        nothing = falses(len(column))
        zeros = pc.fill_null(pa.nulls(len(column), pa.int64()), 0)
        return Quantities(pc.invert(nothing), nothing, nothing, zeros)
    if pa.types.is_integer(data_type):
        return _integer_quantities(column)
    if pa.types.is_floating(data_type):
        float_column = pc.cast(column, pa.float64())
        integral = pc.and_(pc.is_finite(float_column), _integral(float_column))
        return _float_quantities(float_column, pc.fill_null(integral, False))
    if pa.types.is_decimal(data_type):
        # Integrality is judged on the exact decimal; the float is only for the magnitude.
        integral = pc.fill_null(_integral(column), False)
        return _float_quantities(pc.cast(column, pa.float64(), safe=False), integral)
    return _text_quantities(pc.cast(column, pa.string()))


def _integral(column: Any) -> Any:
    return pc.equal(pc.floor(column), column)


def _integer_quantities(column: Any) -> Quantities:
    missing = pc.is_null(column)
    none = falses(len(column))
    if pa.types.is_uint64(column.type):
        # uint64 does not fit int64: mark the huge ones before casting.
        huge = pc.fill_null(pc.greater(column, pa.scalar(QUANTITY_HUGE, pa.uint64())), False)
        column = pc.if_else(huge, pa.scalar(0, pa.uint64()), column)
    else:
        huge = none
    value = pc.fill_null(pc.cast(column, pa.int64()), 0)
    return Quantities(missing, none, huge, value)


def _float_quantities(column: Any, integral: Any) -> Quantities:
    missing = pc.is_null(column)
    not_an_integer = pc.and_(pc.invert(integral), pc.invert(missing))
    beyond = pc.fill_null(pc.greater(pc.abs(column), float(QUANTITY_HUGE)), False)
    huge = pc.and_(integral, beyond)
    usable = pc.and_(integral, pc.invert(huge))
    value = pc.cast(pc.if_else(usable, column, 0.0), pa.int64())
    return Quantities(missing, not_an_integer, huge, value)


def _text_quantities(column: Any) -> Quantities:
    if _only_bytes_of(column, _INTEGER_BYTES):
        try:
            value = pc.cast(column, pa.int64())
        except pa.ArrowInvalid:
            pass  # "", "-", "1-2" or an overflow: the careful path says which
        else:
            none = falses(len(column))
            return Quantities(pc.is_null(value), none, none, pc.fill_null(value, 0))
    return _careful_text_quantities(column)


def _careful_text_quantities(column: Any) -> Quantities:
    """Integers written as text: an optional sign and digits, spaces around ignored. The digits
    are counted before casting, so 30 digits are out of range instead of an overflow."""
    text = pc.utf8_trim_whitespace(column)
    missing = missing_text(text)
    integer = pc.fill_null(pc.match_substring_regex(text, _INTEGER_TEXT_PATTERN), False)
    not_an_integer = pc.and_(pc.invert(integer), pc.invert(missing))
    digits = pc.utf8_ltrim(pc.utf8_ltrim(text, characters="+-"), characters="0")
    digit_count = pc.binary_length(digits)
    huge = pc.and_(integer, pc.fill_null(pc.greater(digit_count, QUANTITY_DIGITS_MAX), False))
    # All zeros trim to no digits, and "" does not cast: those stay 0.
    some_digits = pc.fill_null(pc.greater(digit_count, 0), False)
    usable = pc.and_(pc.and_(integer, pc.invert(huge)), some_digits)
    magnitude = pc.cast(pc.if_else(usable, digits, "0"), pa.int64())
    negative = pc.fill_null(pc.starts_with(text, "-"), False)
    value = pc.if_else(negative, pc.negate(magnitude), magnitude)
    return Quantities(missing, not_an_integer, huge, value)
