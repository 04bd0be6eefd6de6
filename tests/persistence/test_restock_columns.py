"""Column checks of restock files: quantities of every type a file may hold, and ids, agree with
the contract's rules row by row, whichever path (fast or careful) judged them."""

import math
import re
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_actors.domain.limits import DELTA_MAX, ON_HAND_MAX, is_valid_id
from inventory_actors.restock.columns import ID_LENGTH_MAX, ID_LENGTH_MIN, not_an_id
from inventory_actors.restock.file_reader import (
    RejectReason,
    RestockFileError,
    RestockMode,
    validate_chunk,
)

R = RejectReason
ID_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-"
Outcome = int | RejectReason


def judged(quantity: pa.Array, mode: RestockMode) -> list[Outcome]:
    """Each row's quantity, or why it was rejected."""
    count = len(quantity)
    chunk = pa.table(
        {
            "row": pa.array(range(1, count + 1), pa.int64()),
            "sku": pa.array(["SKU"] * count, pa.string()),
            "location": pa.array(["L1"] * count, pa.string()),
            "quantity": quantity,
        }
    )
    good, rejects = validate_chunk(chunk, mode)
    outcomes: dict[int, Outcome] = dict(
        zip(good.column("row").to_pylist(), good.column("quantity").to_pylist(), strict=True)
    )
    reasons = rejects.column("reason").to_pylist()
    for row, why in zip(rejects.column("row").to_pylist(), reasons, strict=True):
        assert row not in outcomes
        outcomes[row] = R(why)
    return [outcomes[row] for row in range(1, count + 1)]


def in_range(value: int, mode: RestockMode) -> Outcome:
    if mode is RestockMode.SET:
        return value if 0 <= value <= ON_HAND_MAX else R.QUANTITY_OUT_OF_RANGE_SET
    if value == 0:
        return R.QUANTITY_ZERO_DELTA
    return value if abs(value) <= DELTA_MAX else R.QUANTITY_OUT_OF_RANGE_DELTA


def expected_of_text(cell: str | None, mode: RestockMode) -> Outcome:
    """The rule, written the slow and obvious way."""
    if cell is None or not cell.strip():
        return R.QUANTITY_MISSING
    if not re.fullmatch(r"[+-]?[0-9]+", cell.strip()):
        return R.QUANTITY_NOT_AN_INTEGER
    return in_range(int(cell.strip()), mode)


cells = st.one_of(
    st.none(),
    st.from_regex(r"-?[0-9]{1,21}", fullmatch=True),
    st.text(alphabet=" \t+-0123456789x.e\u0663", max_size=24),
)
# Lists of only digits and `-` take the fast path (one cast); any other cell, the careful one.
digit_lists = st.lists(st.from_regex(r"-?[0-9]{1,21}", fullmatch=True), max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(cells, max_size=30), digit_lists), st.sampled_from(list(RestockMode)))
def test_text_quantities_follow_the_rule(quantities: list[str | None], mode: RestockMode) -> None:
    outcomes = judged(pa.array(quantities, pa.string()), mode)
    assert outcomes == [expected_of_text(cell, mode) for cell in quantities]


@pytest.mark.parametrize("text_type", [pa.large_string(), pa.string_view()])
def test_other_text_types_are_read_like_strings(text_type: pa.DataType) -> None:
    quantities = pa.array(["5", " 6 ", "x", None], text_type)
    expected = [5, 6, R.QUANTITY_NOT_AN_INTEGER, R.QUANTITY_MISSING]
    assert judged(quantities, RestockMode.DELTA) == expected
    assert judged(quantities.dictionary_encode(), RestockMode.DELTA) == expected


@pytest.mark.parametrize(
    "int_type",
    [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32()],
)
def test_integer_quantities_of_every_width(int_type: pa.DataType) -> None:
    quantities = pa.array([1, 0, 100, None], int_type)
    expected = [1, R.QUANTITY_ZERO_DELTA, 100, R.QUANTITY_MISSING]
    assert judged(quantities, RestockMode.DELTA) == expected


def test_large_integers_are_out_of_range_not_an_overflow() -> None:
    big = [DELTA_MAX, DELTA_MAX + 1, -(2**63), 2**63 - 1, ON_HAND_MAX, ON_HAND_MAX + 1]
    assert judged(pa.array(big, pa.int64()), RestockMode.DELTA) == [
        DELTA_MAX,
        R.QUANTITY_OUT_OF_RANGE_DELTA,
        R.QUANTITY_OUT_OF_RANGE_DELTA,
        R.QUANTITY_OUT_OF_RANGE_DELTA,
        R.QUANTITY_OUT_OF_RANGE_DELTA,
        R.QUANTITY_OUT_OF_RANGE_DELTA,
    ]
    unsigned = pa.array([2**64 - 1, 2**63, ON_HAND_MAX, 0], pa.uint64())
    assert judged(unsigned, RestockMode.SET) == [
        R.QUANTITY_OUT_OF_RANGE_SET,
        R.QUANTITY_OUT_OF_RANGE_SET,
        ON_HAND_MAX,
        0,
    ]


@pytest.mark.parametrize("float_type", [pa.float32(), pa.float64()])
def test_float_quantities_must_be_whole_and_finite(float_type: pa.DataType) -> None:
    floats = [3.0, -2.0, 1.5, math.nan, math.inf, -math.inf, None, 0.0, 1e30]
    assert judged(pa.array(floats, float_type), RestockMode.DELTA) == [
        3,
        -2,
        R.QUANTITY_NOT_AN_INTEGER,
        R.QUANTITY_NOT_AN_INTEGER,
        R.QUANTITY_NOT_AN_INTEGER,
        R.QUANTITY_NOT_AN_INTEGER,
        R.QUANTITY_MISSING,
        R.QUANTITY_ZERO_DELTA,
        R.QUANTITY_OUT_OF_RANGE_DELTA,
    ]


def test_half_floats_are_read_too() -> None:
    quantities = pc.cast(pa.array([3.0, 1.5, math.nan, None], pa.float32()), pa.float16())
    assert judged(quantities, RestockMode.SET) == [
        3,
        R.QUANTITY_NOT_AN_INTEGER,
        R.QUANTITY_NOT_AN_INTEGER,
        R.QUANTITY_MISSING,
    ]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_subnormal=False)), max_size=20))
def test_float64_quantities_follow_the_rule(floats: list[float | None]) -> None:
    def expected(value: float | None) -> Outcome:
        if value is None:
            return R.QUANTITY_MISSING
        if not math.isfinite(value) or value != math.floor(value):
            return R.QUANTITY_NOT_AN_INTEGER
        return in_range(int(value), RestockMode.SET)

    outcomes = judged(pa.array(floats, pa.float64()), RestockMode.SET)
    assert outcomes == [expected(value) for value in floats]


def test_decimal_quantities_must_be_whole() -> None:
    decimals = [Decimal("4.00"), Decimal("2.50"), None, Decimal("-3"), Decimal("1" * 30)]
    quantities = pa.array(decimals, pa.decimal128(38, 2))
    assert judged(quantities, RestockMode.DELTA) == [
        4,
        R.QUANTITY_NOT_AN_INTEGER,
        R.QUANTITY_MISSING,
        -3,
        R.QUANTITY_OUT_OF_RANGE_DELTA,
    ]


def test_an_all_null_quantity_column_is_missing_everywhere() -> None:
    assert judged(pa.nulls(2), RestockMode.SET) == [R.QUANTITY_MISSING] * 2


def test_a_quantity_column_of_another_type_is_a_file_error() -> None:
    with pytest.raises(RestockFileError, match="quantity: a column of type bool"):
        judged(pa.array([True]), RestockMode.DELTA)


def test_the_id_bounds_are_the_contracts() -> None:
    assert (ID_LENGTH_MIN, ID_LENGTH_MAX) == (1, 128)


ids_only = st.text(alphabet=ID_CHARACTERS, max_size=140)
ids_or_not = st.text(alphabet=ID_CHARACTERS + " #\n\u00e9\u0000", max_size=140)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(ids_only, max_size=20), st.lists(ids_or_not, max_size=20)))
def test_an_id_is_judged_like_the_contracts_id_check(values: list[str]) -> None:
    flagged = not_an_id(pa.array(values, pa.string())).to_pylist()
    assert flagged == [not is_valid_id(value) for value in values]


def test_a_null_id_is_missing_not_malformed() -> None:
    assert not_an_id(pa.array([None, "A", None], pa.string())).to_pylist() == [False] * 3
    assert not_an_id(pa.array(["A b", None], pa.string()).slice(1)).to_pylist() == [False]
