"""Restock files: checked whole before anything is applied, read in deterministic chunks, the
file's columns checked once, every row judged once. No Ray."""

import hashlib
import io
import itertools
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from inventory_actors.domain.limits import DELTA_MAX, ON_HAND_MAX
from inventory_actors.restock.file_reader import (
    GOOD_SCHEMA,
    REJECT_SCHEMA,
    FileFormat,
    RejectReason,
    RestockFileError,
    RestockMode,
    check_file,
    content_digest,
    detect_format,
    job_id_of,
    read_chunks,
    validate_chunk,
)

R = RejectReason
HEADER = ("sku", "location", "quantity", "reason")
# (sku, location, quantity, reason, why the row is rejected or None) in delta mode: every check
# fails at least once, and the last rows fail several checks but are reported for the first.
Case = tuple[str, str, str, str, RejectReason | None]
DELTA_CASES: list[Case] = [
    ("SKU-1", "L1", "5", "", None),
    ("SKU-2", "bin/2", "-3", "damaged", None),
    ("SKU-3", "L1", " +7 ", "received", None),
    ("a.b_c:d/e-f", "L1", "007", "", None),
    ("SKU-4", "L1", str(DELTA_MAX), "restock", None),
    ("SKU-5", "L1", str(-DELTA_MAX), "shrinkage", None),
    ("", "L1", "5", "", R.SKU_MISSING),
    ("two words", "L1", "5", "", R.SKU_NOT_AN_ID),
    ("x" * 129, "L1", "5", "", R.SKU_NOT_AN_ID),
    ("caf\u00e9", "L1", "5", "", R.SKU_NOT_AN_ID),
    ("SKU-6", "", "5", "", R.LOCATION_MISSING),
    ("SKU-6", "bin#1", "5", "", R.LOCATION_NOT_AN_ID),
    ("SKU-7", "L1", "", "", R.QUANTITY_MISSING),
    ("SKU-7", "L1", "   ", "", R.QUANTITY_MISSING),
    ("SKU-7", "L1", "abc", "", R.QUANTITY_NOT_AN_INTEGER),
    ("SKU-7", "L1", "1.5", "", R.QUANTITY_NOT_AN_INTEGER),
    ("SKU-7", "L1", "2.0", "", R.QUANTITY_NOT_AN_INTEGER),
    ("SKU-7", "L1", "0x10", "", R.QUANTITY_NOT_AN_INTEGER),
    ("SKU-7", "L1", "1e3", "", R.QUANTITY_NOT_AN_INTEGER),
    ("SKU-7", "L1", "--5", "", R.QUANTITY_NOT_AN_INTEGER),
    ("SKU-7", "L1", "NaN", "", R.QUANTITY_NOT_AN_INTEGER),
    ("SKU-8", "L1", "0", "", R.QUANTITY_ZERO_DELTA),
    ("SKU-8", "L1", "-0", "", R.QUANTITY_ZERO_DELTA),
    ("SKU-8", "L1", str(DELTA_MAX + 1), "", R.QUANTITY_OUT_OF_RANGE_DELTA),
    ("SKU-8", "L1", str(-DELTA_MAX - 1), "", R.QUANTITY_OUT_OF_RANGE_DELTA),
    ("SKU-8", "L1", "1" * 30, "", R.QUANTITY_OUT_OF_RANGE_DELTA),
    ("SKU-8", "L1", "-" + "9" * 30, "", R.QUANTITY_OUT_OF_RANGE_DELTA),
    ("SKU-9", "L1", "5", "bogus", R.REASON_UNKNOWN),
    ("SKU-9", "L1", "5", "Restock", R.REASON_UNKNOWN),
    ("", "", "abc", "bogus", R.SKU_MISSING),
    ("SKU-10", "bad bin", "", "bogus", R.LOCATION_NOT_AN_ID),
    ("SKU-11", "L1", "0", "bogus", R.QUANTITY_ZERO_DELTA),
]
SET_CASES: list[Case] = [
    ("SKU-1", "L1", "0", "", None),
    ("SKU-2", "L1", str(ON_HAND_MAX), "correction", None),
    ("SKU-3", "L1", "12", "", None),
    ("SKU-4", "L1", "-1", "", R.QUANTITY_OUT_OF_RANGE_SET),
    ("SKU-5", "L1", str(ON_HAND_MAX + 1), "", R.QUANTITY_OUT_OF_RANGE_SET),
    ("SKU-6", "L1", "9" * 25, "", R.QUANTITY_OUT_OF_RANGE_SET),
    ("SKU-7", "L1", "x", "", R.QUANTITY_NOT_AN_INTEGER),
]


def csv_bytes(header: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    lines = [",".join(header), *[",".join(row) for row in rows]]
    return ("\n".join(lines) + "\n").encode()


def parquet_bytes(table: pa.Table, row_group_rows: int | None = None) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_rows)
    return sink.getvalue()


def string_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> pa.Table:
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


def case_file(cases: Sequence[Case], fmt: FileFormat) -> bytes:
    rows = [case[:4] for case in cases]
    if fmt is FileFormat.CSV:
        return csv_bytes(HEADER, rows)
    return parquet_bytes(string_table(HEADER, rows))


def judge_file(
    source: bytes | Path, fmt: FileFormat, mode: RestockMode, rows_per_chunk: int = 4
) -> tuple[pa.Table, pa.Table]:
    """All chunks' good rows and rejects, concatenated."""
    goods, rejects = [], []
    for chunk in read_chunks(source, fmt, rows_per_chunk):
        good, rejected = validate_chunk(chunk, mode)
        assert good.schema == GOOD_SCHEMA and rejected.schema == REJECT_SCHEMA
        assert good.num_rows + rejected.num_rows == chunk.num_rows
        goods.append(good)
        rejects.append(rejected)
    good_table = pa.concat_tables(goods) if goods else GOOD_SCHEMA.empty_table()
    reject_table = pa.concat_tables(rejects) if rejects else REJECT_SCHEMA.empty_table()
    return good_table, reject_table


# -- formats, digests, job ids -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("restock.parquet", FileFormat.PARQUET),
        ("a/b/RESTOCK.PQ", FileFormat.PARQUET),
        ("count.csv", FileFormat.CSV),
        ("count.2024.CSV", FileFormat.CSV),
    ],
)
def test_the_format_is_known_by_the_suffix(name: str, fmt: FileFormat) -> None:
    assert detect_format(name) is fmt


@pytest.mark.parametrize("name", ["restock.xlsx", "restock", "csv", "restock.csv.gz"])
def test_any_other_suffix_is_not_a_restock_file(name: str) -> None:
    with pytest.raises(RestockFileError, match="not a restock file"):
        detect_format(name)


def test_the_digest_is_sha256_of_the_mode_and_the_content(tmp_path: Path) -> None:
    # Over 2 MiB, so a path is hashed in several blocks.
    content = random.Random(1).randbytes(2_500_000)
    path = tmp_path / "restock.csv"
    path.write_bytes(content)
    expected = hashlib.sha256(b"delta\n" + content).hexdigest()
    assert content_digest(content, RestockMode.DELTA) == expected
    assert content_digest(path, RestockMode.DELTA) == expected
    assert content_digest(str(path), RestockMode.DELTA) == expected


def test_the_same_file_in_another_mode_is_another_digest() -> None:
    content = csv_bytes(HEADER, [("A", "L1", "5", "")])
    delta = content_digest(content, RestockMode.DELTA)
    assert delta == content_digest(bytes(content), RestockMode.DELTA)
    assert delta != content_digest(content, RestockMode.SET)
    assert delta != content_digest(content + b"B,L1,5,\n", RestockMode.DELTA)


def test_the_digest_of_a_missing_file_is_a_file_error(tmp_path: Path) -> None:
    with pytest.raises(RestockFileError, match="cannot read"):
        content_digest(tmp_path / "nowhere.csv", RestockMode.DELTA)


def test_a_job_id_is_the_first_32_digits_of_the_digest() -> None:
    digest = content_digest(b"x", RestockMode.SET)
    assert job_id_of(digest) == "rj-" + digest[:32]
    with pytest.raises(ValueError):
        job_id_of("not hex")


# -- reading --------------------------------------------------------------------------------------


def numbered_table(row_count: int) -> pa.Table:
    return pa.table(
        {
            "sku": pa.array([f"sku-{i % 97}" for i in range(row_count)], pa.string()),
            "location": pa.array([f"L{i % 5}" for i in range(row_count)], pa.string()),
            "quantity": pa.array([i + 1 for i in range(row_count)], pa.int64()),
        }
    )


def chunk_rows(chunks: Iterator[pa.Table]) -> list[list[int]]:
    return [chunk.column("row").to_pylist() for chunk in chunks]


def expected_rows(row_count: int, rows_per_chunk: int) -> list[list[int]]:
    starts = range(1, row_count + 1, rows_per_chunk)
    return [list(range(start, min(start + rows_per_chunk, row_count + 1))) for start in starts]


@pytest.mark.parametrize("row_group_rows", [7, 64, 100, 1000])
@pytest.mark.parametrize("batch_rows", [None, 5, 1000])
def test_parquet_chunks_are_cut_at_the_same_rows_whatever_the_row_groups(
    row_group_rows: int, batch_rows: int | None
) -> None:
    table = numbered_table(1000)
    content = parquet_bytes(table, row_group_rows)
    chunks = list(read_chunks(content, FileFormat.PARQUET, 64, parquet_batch_rows=batch_rows))
    assert chunk_rows(iter(chunks)) == expected_rows(1000, 64)
    assert [chunk.num_rows for chunk in chunks] == [64] * 15 + [40]
    read_back = pa.concat_tables(chunks).drop_columns(["row"])
    assert read_back.equals(table)


@pytest.mark.parametrize("block_bytes", [256, 4096, 1 << 20])
def test_csv_chunks_are_cut_at_the_same_rows_whatever_the_block_size(block_bytes: int) -> None:
    buffer = io.BytesIO()
    pa_csv.write_csv(numbered_table(1000), buffer)
    content = buffer.getvalue()
    chunks = list(read_chunks(content, FileFormat.CSV, 64, csv_block_bytes=block_bytes))
    assert chunk_rows(iter(chunks)) == expected_rows(1000, 64)
    quantities = [int(q) for chunk in chunks for q in chunk.column("quantity").to_pylist()]
    assert quantities == list(range(1, 1001))
    assert all(chunk.schema.field("quantity").type == pa.string() for chunk in chunks)


def test_a_chunk_has_row_then_the_files_columns() -> None:
    content = csv_bytes(HEADER, [("A", "L1", "5", "received"), ("B", "L2", "6", "")])
    (chunk,) = read_chunks(content, FileFormat.CSV, 10)
    assert chunk.column_names == ["row", "sku", "location", "quantity", "reason"]
    assert chunk.schema.field("row").type == pa.int64()
    assert chunk.to_pylist()[1] == {
        "row": 2,
        "sku": "B",
        "location": "L2",
        "quantity": "6",
        "reason": "",
    }


def test_a_spreadsheets_csv_with_a_bom_crlf_and_blank_lines_is_read() -> None:
    content = b"\xef\xbb\xbfsku,location,quantity\r\nA,L1,1\r\n\r\nB,L1,2\r\n"
    (chunk,) = read_chunks(content, FileFormat.CSV, 10)
    # A blank line is no data row: rows count data rows, not lines.
    assert chunk.to_pylist() == [
        {"row": 1, "sku": "A", "location": "L1", "quantity": "1"},
        {"row": 2, "sku": "B", "location": "L1", "quantity": "2"},
    ]


@pytest.mark.parametrize("rows_per_chunk", [1, 3, 10])
def test_rows_are_numbered_from_one_without_the_header(rows_per_chunk: int) -> None:
    content = csv_bytes(HEADER[:3], [(f"S{i}", "L", str(i)) for i in range(7)])
    rows = chunk_rows(read_chunks(content, FileFormat.CSV, rows_per_chunk))
    assert rows == expected_rows(7, rows_per_chunk)


def test_a_path_and_the_same_bytes_give_the_same_chunks(tmp_path: Path) -> None:
    for fmt, content in [
        (FileFormat.PARQUET, parquet_bytes(numbered_table(300), 50)),
        (FileFormat.CSV, csv_bytes(HEADER[:3], [(f"S{i}", "L", str(i)) for i in range(300)])),
    ]:
        path = tmp_path / f"restock.{fmt}"
        path.write_bytes(content)
        from_bytes = list(read_chunks(content, fmt, 64))
        from_path = list(read_chunks(path, fmt, 64))
        from_text = list(read_chunks(str(path), fmt, 64))
        assert len(from_bytes) == len(from_path) == len(from_text) == 5
        for a, b, c in zip(from_bytes, from_path, from_text, strict=True):
            assert a.equals(b) and a.equals(c)


EXPORT_HEADER = ("sku", "location", "on_hand", "reserved", "available", "version", "shard", "lsn")


@pytest.mark.parametrize("fmt", list(FileFormat))
def test_an_export_is_importable_its_on_hand_is_the_quantity(fmt: FileFormat) -> None:
    rows = [("A", "L1", "10", "2", "8", "3", "0", "17"), ("B", "L2", "0", "0", "0", "1", "1", "9")]
    if fmt is FileFormat.CSV:
        content = csv_bytes(EXPORT_HEADER, rows)
    else:
        table = string_table(EXPORT_HEADER, rows)
        on_hand = pa.array([10, 0], pa.int64())
        content = parquet_bytes(table.set_column(2, "on_hand", on_hand))
    (chunk,) = read_chunks(content, fmt, 10)
    assert chunk.column_names == ["row", "sku", "location", "quantity"]
    assert [int(q) for q in chunk.column("quantity").to_pylist()] == [10, 0]
    good, rejects = validate_chunk(chunk, RestockMode.SET)
    assert rejects.num_rows == 0
    assert good.column("quantity").to_pylist() == [10, 0]
    assert good.column("reason").to_pylist() == ["cycle_count", "cycle_count"]


def file_of(fmt: FileFormat, header: Sequence[str]) -> bytes:
    rows = [tuple("1" for _ in header)]
    if fmt is FileFormat.CSV:
        return csv_bytes(header, rows)
    return parquet_bytes(string_table(header, rows))


@pytest.mark.parametrize("fmt", list(FileFormat))
def test_an_unknown_column_is_refused_by_name(fmt: FileFormat) -> None:
    content = file_of(fmt, ("sku", "location", "quantity", "price", "note"))
    with pytest.raises(RestockFileError, match="unknown columns: price, note"):
        read_chunks(content, fmt, 10)


@pytest.mark.parametrize("fmt", list(FileFormat))
@pytest.mark.parametrize(
    ("header", "missing"),
    [
        (("location", "quantity"), "sku"),
        (("sku", "quantity", "reason"), "location"),
        (("sku", "location", "reserved"), "quantity"),
    ],
)
def test_a_missing_column_is_refused_by_name(
    fmt: FileFormat, header: tuple[str, ...], missing: str
) -> None:
    with pytest.raises(RestockFileError, match=f"missing columns: {missing}"):
        read_chunks(file_of(fmt, header), fmt, 10)


def test_quantity_and_on_hand_together_are_refused() -> None:
    content = file_of(FileFormat.CSV, ("sku", "location", "quantity", "on_hand"))
    with pytest.raises(RestockFileError, match="on_hand"):
        read_chunks(content, FileFormat.CSV, 10)


def test_a_repeated_column_is_refused() -> None:
    content = file_of(FileFormat.CSV, ("sku", "location", "quantity", "sku"))
    with pytest.raises(RestockFileError, match="duplicate columns: sku"):
        read_chunks(content, FileFormat.CSV, 10)


def test_a_parquet_sku_column_that_is_not_text_is_refused() -> None:
    table = numbered_table(3).set_column(0, "sku", pa.array([1, 2, 3], pa.int64()))
    with pytest.raises(RestockFileError, match="sku: a column of type int64"):
        read_chunks(parquet_bytes(table), FileFormat.PARQUET, 10)


@pytest.mark.parametrize("fmt", list(FileFormat))
def test_an_empty_file_is_refused(fmt: FileFormat, tmp_path: Path) -> None:
    path = tmp_path / f"empty.{fmt}"
    path.write_bytes(b"")
    for source in (b"", path):
        with pytest.raises(RestockFileError, match="empty"):
            read_chunks(source, fmt, 10)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RestockFileError, match="cannot read"):
        read_chunks(tmp_path / "nowhere.parquet", FileFormat.PARQUET, 10)


def test_a_csv_of_only_a_header_yields_no_chunk() -> None:
    assert list(read_chunks(b"sku,location,quantity\n", FileFormat.CSV, 10)) == []


def test_a_parquet_file_without_rows_yields_no_chunk() -> None:
    content = parquet_bytes(numbered_table(0))
    assert list(read_chunks(content, FileFormat.PARQUET, 10)) == []


def corrupt_parquet_files() -> list[bytes]:
    content = parquet_bytes(numbered_table(2000), 500)
    middle = len(content) // 2
    scrambled = content[:8] + random.Random(2).randbytes(middle - 8) + content[middle:]
    return [b"not parquet at all", random.Random(3).randbytes(5000), content[:-20], scrambled]


@pytest.mark.parametrize("content", corrupt_parquet_files(), ids=["text", "noise", "cut", "mid"])
def test_a_corrupt_parquet_file_is_refused_by_the_check(content: bytes) -> None:
    with pytest.raises(RestockFileError):
        check_file(content, FileFormat.PARQUET)


def test_a_parquet_file_corrupt_in_its_last_row_group_is_refused_naming_the_row() -> None:
    """The reader yields the first 1,500 rows before it meets the damage: the check reads the
    whole file first, so a job applies none of it."""
    content = bytearray(parquet_bytes(numbered_table(2000), 500))
    page = pq.ParquetFile(pa.BufferReader(bytes(content))).metadata.row_group(3).column(0)
    start = page.data_page_offset + 8
    content[start : start + 200] = bytes(200)
    damaged = bytes(content)
    chunks = read_chunks(damaged, FileFormat.PARQUET, 500)
    assert [chunk.num_rows for chunk in itertools.islice(chunks, 3)] == [500, 500, 500]
    with pytest.raises(RestockFileError, match="row group 3, data rows 1501 to 2000") as refused:
        check_file(damaged, FileFormat.PARQUET)
    assert refused.value.row == 1501


def csv_of(row_count: int) -> list[str]:
    return ["sku,location,quantity", *[f"S-{i},L1,{i + 1}" for i in range(row_count)]]


@pytest.mark.parametrize(
    ("last_row", "problem"),
    [
        ("S-x,L1,5,9", "Expected 3 columns, got 4"),
        ("S-x,L1", "Expected 3 columns, got 2"),
        ("S-\xff,L1,5", "invalid UTF8"),
        ('S-x,"L1,5', "Expected 3 columns"),
    ],
    ids=["extra-cell", "short-row", "not-utf8", "open-quote"],
)
def test_a_csv_that_breaks_after_its_first_block_is_refused_naming_the_row(
    last_row: str, problem: str
) -> None:
    """Rows 1 to 2,999 are sound and the reader yields their chunks before it meets row
    3,000: the check reads the whole file first, so a job applies none of it."""
    lines = [*csv_of(2_999), last_row]
    content = ("\n".join(lines) + "\n").encode("latin-1")
    chunks = read_chunks(content, FileFormat.CSV, 1_000, csv_block_bytes=4_096)
    assert [chunk.num_rows for chunk in itertools.islice(chunks, 2)] == [1_000, 1_000]
    with pytest.raises(RestockFileError, match="at data row 3000: .*" + problem) as refused:
        check_file(content, FileFormat.CSV)
    assert refused.value.row == 3_000
    assert "Row #" not in str(refused.value)  # the reader counts the header as a row


@pytest.mark.parametrize(
    "content",
    [
        b"sku,location,quantity\nA,L1,5\nB,L2\n",
        b"sku,location,quantity\nA,L1,5\n\xff\xfe,L2,6\n",
        bytes(random.Random(4).randbytes(3000)),
        b"PAR1\x00\x01\x02",
    ],
    ids=["short-row", "not-utf8", "noise", "parquet-ish"],
)
def test_a_corrupt_csv_file_is_refused_by_the_check(content: bytes) -> None:
    with pytest.raises(RestockFileError):
        check_file(content, FileFormat.CSV)


def test_a_parquet_file_read_as_csv_is_refused_by_the_check() -> None:
    with pytest.raises(RestockFileError):
        check_file(parquet_bytes(numbered_table(50)), FileFormat.CSV)


@pytest.mark.parametrize("fmt", list(FileFormat))
def test_the_check_counts_the_data_rows_and_leaves_bad_values_to_validation(
    fmt: FileFormat,
) -> None:
    """A value that is not a quantity or an id is a row to reject, not a broken file."""
    rows = [case[:4] for case in DELTA_CASES]
    content = csv_bytes(HEADER, rows) if fmt is FileFormat.CSV else case_file(DELTA_CASES, fmt)
    assert check_file(content, fmt) == len(DELTA_CASES)
    assert check_file(csv_bytes(HEADER, []), FileFormat.CSV) == 0


@pytest.mark.parametrize("rows_per_chunk", [0, -1, 1_000_001])
def test_a_chunk_size_out_of_bounds_is_refused(rows_per_chunk: int) -> None:
    with pytest.raises(ValueError, match="rows_per_chunk"):
        read_chunks(b"sku,location,quantity\n", FileFormat.CSV, rows_per_chunk)


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FileFormat))
@pytest.mark.parametrize(
    ("mode", "cases"), [(RestockMode.DELTA, DELTA_CASES), (RestockMode.SET, SET_CASES)]
)
def test_each_bad_row_is_rejected_once_for_its_first_failing_check(
    fmt: FileFormat, mode: RestockMode, cases: list[Case]
) -> None:
    good, rejects = judge_file(case_file(cases, fmt), fmt, mode)
    expected_rejects = [
        {"row": row, "reason": str(why)}
        for row, (*_, why) in enumerate(cases, start=1)
        if why is not None
    ]
    assert rejects.to_pylist() == expected_rejects
    default = "restock" if mode is RestockMode.DELTA else "cycle_count"
    expected_good = [
        {
            "row": row,
            "sku": sku,
            "location": location,
            "quantity": int(quantity.strip()),
            "reason": reason or default,
        }
        for row, (sku, location, quantity, reason, why) in enumerate(cases, start=1)
        if why is None
    ]
    assert good.to_pylist() == expected_good
    assert good.num_rows + rejects.num_rows == len(cases)


def test_null_cells_of_a_parquet_file_are_missing() -> None:
    table = pa.table(
        {
            "sku": pa.array([None, "A", "A", "A"], pa.string()),
            "location": pa.array(["L", None, "L", "L"], pa.string()),
            "quantity": pa.array([1, 1, None, 4], pa.int32()),
            "reason": pa.array(["received", None, None, None], pa.string()),
        }
    )
    good, rejects = judge_file(parquet_bytes(table), FileFormat.PARQUET, RestockMode.DELTA)
    assert rejects.to_pylist() == [
        {"row": 1, "reason": R.SKU_MISSING},
        {"row": 2, "reason": R.LOCATION_MISSING},
        {"row": 3, "reason": R.QUANTITY_MISSING},
    ]
    assert good.to_pylist() == [
        {"row": 4, "sku": "A", "location": "L", "quantity": 4, "reason": "restock"}
    ]


def test_a_file_without_a_reason_column_gets_the_modes_default() -> None:
    content = csv_bytes(HEADER[:3], [("A", "L1", "3"), ("B", "L1", "4")])
    for mode, default in [(RestockMode.DELTA, "restock"), (RestockMode.SET, "cycle_count")]:
        good, _ = judge_file(content, FileFormat.CSV, mode)
        assert good.column("reason").to_pylist() == [default, default]


def test_a_chunk_of_only_good_rows_has_no_rejects() -> None:
    content = parquet_bytes(numbered_table(500), 100)
    good, rejects = judge_file(content, FileFormat.PARQUET, RestockMode.DELTA, 128)
    assert rejects.num_rows == 0
    assert good.column("row").to_pylist() == list(range(1, 501))
    assert good.column("quantity").to_pylist() == list(range(1, 501))


def test_an_empty_chunk_is_judged_to_empty_tables() -> None:
    (chunk,) = read_chunks(csv_bytes(HEADER, [("A", "L", "1", "")]), FileFormat.CSV, 10)
    good, rejects = validate_chunk(chunk.slice(0, 0), RestockMode.DELTA)
    assert good.schema == GOOD_SCHEMA and good.num_rows == 0
    assert rejects.schema == REJECT_SCHEMA and rejects.num_rows == 0


def test_a_chunk_without_a_required_column_is_a_file_error() -> None:
    table = pa.table({"row": pa.array([1], pa.int64()), "sku": ["A"], "location": ["L"]})
    with pytest.raises(RestockFileError, match="quantity"):
        validate_chunk(table, RestockMode.DELTA)
