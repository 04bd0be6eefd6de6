"""Restock files (Parquet or CSV): checked whole (`check_file`), then streamed in fixed-size
chunks, each checked a column at a time. No loop over rows in Python: record batches are re-cut
into chunks of exactly `rows_per_chunk` rows (a chunk number is an idempotency key, so the cut
must not depend on the reader's batch sizes), and `validate_chunk` checks whole columns."""

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from inventory_actors.domain.limits import DELTA_MAX, ON_HAND_MAX, REASONS
from inventory_actors.restock.columns import (
    ID_LENGTH_MAX,
    ID_LENGTH_MIN,
    Quantities,
    decoded,
    judge_quantities,
    missing_text,
    not_an_id,
    type_problem,
)
from inventory_actors.shard.restock_chunk import CHUNK_SCHEMA

ROWS_PER_CHUNK_MAX: Final = 1_000_000
DIGEST_BLOCK_BYTES: Final = 1 << 20
CSV_BLOCK_BYTES: Final = 1 << 20
# Parquet column chunks are read through a buffer of this size instead of whole, so a file
# written with one huge row group does not sit in memory all at once.
PARQUET_BUFFER_BYTES: Final = 8 << 20
CHECK_PARQUET_BATCH_ROWS: Final = 100_000
# How much of the reader's message (a CSV error quotes the row) a file error keeps.
ERROR_TEXT_MAX: Final = 300

REQUIRED_COLUMNS: Final = ("sku", "location", "quantity")
OPTIONAL_COLUMNS: Final = ("reason",)
# An export of this service is importable: its `on_hand` is the count, the rest is ignored.
EXPORT_QUANTITY_COLUMN: Final = "on_hand"
EXPORT_IGNORED_COLUMNS: Final = frozenset({"reserved", "available", "version", "shard", "lsn"})
KNOWN_COLUMNS: Final = frozenset(
    {*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, EXPORT_QUANTITY_COLUMN, *EXPORT_IGNORED_COLUMNS}
)

GOOD_SCHEMA: Final = CHUNK_SCHEMA
REJECT_SCHEMA: Final = pa.schema([("row", pa.int64()), ("reason", pa.string())])
_ID_CHARACTERS = f"{ID_LENGTH_MIN} to {ID_LENGTH_MAX} of A-Z a-z 0-9 . _ : / -"


class FileFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"


class RestockMode(StrEnum):
    """DELTA adds each quantity to the stock; SET makes it the counted stock."""

    DELTA = "delta"
    SET = "set"


DEFAULT_REASONS: Final = {RestockMode.DELTA: "restock", RestockMode.SET: "cycle_count"}


class RejectReason(StrEnum):
    """Why a row was rejected: the first failing check, in this order."""

    SKU_MISSING = "sku: missing"
    SKU_NOT_AN_ID = f"sku: not an id ({_ID_CHARACTERS})"
    LOCATION_MISSING = "location: missing"
    LOCATION_NOT_AN_ID = f"location: not an id ({_ID_CHARACTERS})"
    QUANTITY_MISSING = "quantity: missing"
    QUANTITY_NOT_AN_INTEGER = "quantity: not an integer"
    QUANTITY_ZERO_DELTA = "quantity: must not be 0 in delta mode"
    QUANTITY_OUT_OF_RANGE_DELTA = f"quantity: out of range, a delta is -{DELTA_MAX} to {DELTA_MAX}"
    QUANTITY_OUT_OF_RANGE_SET = f"quantity: out of range, a count is 0 to {ON_HAND_MAX}"
    REASON_UNKNOWN = f"reason: not one of {', '.join(sorted(REASONS))}"


class RestockFileError(ValueError):
    """The file as a whole cannot be read: unreadable, not Parquet/CSV, wrong columns, or
    broken somewhere (`row`: the data row where it breaks, when known)."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message)
        self.row = row


Source = str | Path | bytes


def detect_format(name: str) -> FileFormat:
    """The format a file name's suffix promises (`.parquet`/`.pq` or `.csv`, any case)."""
    suffix = Path(name).suffix.lower()
    if suffix in (".parquet", ".pq"):
        return FileFormat.PARQUET
    if suffix == ".csv":
        return FileFormat.CSV
    raise RestockFileError(f"{name!r}: not a restock file (expected .parquet, .pq or .csv)")


def content_digest(source: Source, mode: RestockMode) -> str:
    """sha256 (hex) of the mode and the file's bytes: the same file restocked in another mode
    is another job. A path is hashed in blocks, never read whole."""
    digest = hashlib.sha256(f"{RestockMode(mode)}\n".encode())
    if isinstance(source, bytes):
        digest.update(source)
        return digest.hexdigest()
    try:
        with open(source, "rb") as handle:
            while block := handle.read(DIGEST_BLOCK_BYTES):
                digest.update(block)
    except OSError as error:
        raise RestockFileError(f"cannot read the file: {error}") from error
    return digest.hexdigest()


def job_id_of(digest: str) -> str:
    """The restock job of a content digest: `rj-` and its first 32 hex digits."""
    if len(digest) < 32 or not set(digest[:32]) <= set("0123456789abcdef"):
        raise ValueError("a content digest is lowercase hex of at least 32 digits")
    return "rj-" + digest[:32]


# -- reading ------------------------------------------------------------------------------------


def check_file(source: Source, fmt: FileFormat) -> int:
    """Read the whole file as `read_chunks` does and count its data rows, so that a job applies
    nothing of a file that breaks anywhere: RestockFileError, naming the data row, for a CSV row
    with more or fewer cells than the header, text that is not UTF-8, or a Parquet file cut
    short or corrupt. Bad values in sound rows are not its concern: `validate_chunk` rejects
    those row by row."""
    _require_content(source)
    if FileFormat(fmt) is FileFormat.PARQUET:
        return _check_parquet(source)
    batches, _ = _open_csv(source, CSV_BLOCK_BYTES)
    return sum(batch.num_rows for batch in batches)


@dataclass(frozen=True)
class _ColumnPlan:
    """Which columns of the file to read, and the names they take in a chunk."""

    read: tuple[str, ...]
    names: tuple[str, ...]


def read_chunks(
    source: Source,
    fmt: FileFormat,
    rows_per_chunk: int,
    *,
    csv_block_bytes: int = CSV_BLOCK_BYTES,
    parquet_batch_rows: int | None = None,
) -> Iterator[pa.Table]:
    """The file's rows in tables of exactly `rows_per_chunk` rows (the last may be shorter),
    each with a first column `row`: the 1-based number of the data row in the file.

    Columns are `row`, `sku`, `location`, `quantity` and `reason` when the file has one; an
    export's `on_hand` becomes `quantity` and its other columns are dropped. CSV cells are all
    read as text (`validate_chunk` judges them). The file is opened and its columns are checked
    here, before anything is yielded: RestockFileError if it cannot be. A file with no data rows
    yields no table. A file corrupt past its start raises RestockFileError while iterating,
    after earlier chunks were yielded: `check_file` first refuses such a file whole.
    The reader options only change how the file is read, never where chunks are cut.
    """
    if not 1 <= rows_per_chunk <= ROWS_PER_CHUNK_MAX:
        raise ValueError(f"rows_per_chunk must be 1 to {ROWS_PER_CHUNK_MAX}")
    _require_content(source)
    if FileFormat(fmt) is FileFormat.PARQUET:
        # A batch of a chunk's rows by default: each chunk is then mostly one slice.
        batch_rows = rows_per_chunk if parquet_batch_rows is None else parquet_batch_rows
        batches, plan = _open_parquet(source, batch_rows)
    else:
        batches, plan = _open_csv(source, csv_block_bytes)
    return _rechunked(batches, plan, rows_per_chunk)


def _require_content(source: Source) -> None:
    try:
        size_bytes = len(source) if isinstance(source, bytes) else os.stat(source).st_size
    except OSError as error:
        raise RestockFileError(f"cannot read the file: {error}") from error
    if size_bytes == 0:
        raise RestockFileError("the file is empty")


def _native(source: Source) -> Any:
    """What pyarrow opens: a path as text, bytes as an in-memory file."""
    return pa.BufferReader(source) if isinstance(source, bytes) else str(source)


def _open_parquet(source: Source, batch_rows: int) -> tuple[Iterator[Any], _ColumnPlan]:
    parquet, plan = _parquet_file(source)
    # One thread: the shards take the other cores, and for a few columns threads only made
    # the time vary more (0.25 to 0.65 s a million rows, against 0.3 to 0.4 s).
    batches = parquet.iter_batches(
        batch_size=batch_rows, columns=list(plan.read), use_threads=False
    )
    return _closing(batches, parquet), plan


def _parquet_file(source: Source) -> tuple[Any, _ColumnPlan]:
    """The open file and the columns to read, once its schema is known good."""
    try:
        parquet = pq.ParquetFile(
            _native(source),
            memory_map=False,
            buffer_size=PARQUET_BUFFER_BYTES,
            pre_buffer=False,
        )
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError) as error:
        raise RestockFileError(f"not a readable Parquet file: {_shortened(error)}") from error
    try:
        plan = _plan_columns(schema.names)
        for name, target in zip(plan.read, plan.names, strict=True):
            _check_type(target, schema.field(name).type)
    except RestockFileError:
        parquet.close()
        raise
    return parquet, plan


def _check_parquet(source: Source) -> int:
    """The rows of a Parquet file read whole, a row group at a time: a damaged group is named
    with its rows (a batch of the reader may span groups, and so would not say where)."""
    parquet, plan = _parquet_file(source)
    rows = 0
    try:
        for group in range(parquet.num_row_groups):
            group_rows = parquet.metadata.row_group(group).num_rows
            batches = parquet.iter_batches(
                CHECK_PARQUET_BATCH_ROWS, [group], list(plan.read), use_threads=False
            )
            try:
                for _ in batches:
                    pass
            except (pa.ArrowException, OSError) as error:
                raise RestockFileError(
                    f"the file is broken in row group {group}, data rows {rows + 1} to "
                    f"{rows + group_rows}: {_shortened(error)}",
                    rows + 1,
                ) from error
            rows += group_rows
    finally:
        parquet.close()
    return rows


def _open_csv(source: Source, block_bytes: int) -> tuple[Iterator[Any], _ColumnPlan]:
    # The header is read first on its own: every column the file has must be typed as text
    # when it is opened for real, and only the header says which columns it has.
    with _csv_input(source) as header_input:
        header = _csv_reader(header_input, block_bytes, sorted(KNOWN_COLUMNS), include=None)
        names = header.schema.names
        header.close()
    plan = _plan_columns(names)
    rows_input = _csv_input(source)
    try:
        reader = _csv_reader(rows_input, block_bytes, names, include=plan.read)
    except RestockFileError:
        rows_input.close()
        raise
    return _closing(reader, reader, rows_input), plan


def _csv_input(source: Source) -> Any:
    """A file pyarrow reads through Python: Arrow's own file reading keeps some 32 MiB of
    read-ahead buffers, a Python file only the block being parsed (and is as fast)."""
    if isinstance(source, bytes):
        return pa.BufferReader(source)
    try:
        return pa.PythonFile(open(source, "rb"), mode="r")
    except OSError as error:
        raise RestockFileError(f"cannot read the file: {error}") from error


def _csv_reader(
    source: Any, block_bytes: int, text_columns: Sequence[str], include: Sequence[str] | None
) -> Any:
    # One thread, as for Parquet: parsing in parallel was no faster here, on two cores.
    read_options = pa_csv.ReadOptions(
        use_threads=False, block_size=block_bytes, skip_rows=0, encoding="utf8"
    )
    parse_options = pa_csv.ParseOptions(
        delimiter=",", quote_char='"', double_quote=True, escape_char=False,
        newlines_in_values=False, ignore_empty_lines=True,
    )  # fmt: skip
    convert_options = pa_csv.ConvertOptions(
        check_utf8=True,
        column_types={name: pa.string() for name in text_columns},
        strings_can_be_null=False,
        quoted_strings_can_be_null=False,
        include_columns=list(include) if include is not None else [],
    )
    try:
        return pa_csv.open_csv(
            source,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=convert_options,
        )
    except (pa.ArrowException, OSError) as error:
        # The first block is parsed here: a row it breaks at is named as any later one is.
        if _ROW_OF_ERROR.search(str(error)):
            raise _broken(error, 0) from error
        raise RestockFileError(f"not a readable CSV file: {_shortened(error)}") from error


def _plan_columns(names: Sequence[str]) -> _ColumnPlan:
    """The columns to read, or RestockFileError naming what is wrong with the header."""
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise RestockFileError(f"duplicate columns: {', '.join(duplicates)}")
    unknown = [name for name in names if name not in KNOWN_COLUMNS]
    if unknown:
        raise RestockFileError(
            f"unknown columns: {', '.join(unknown)} (a restock file has sku, location, "
            "quantity and optionally reason)"
        )
    present = set(names)
    if {"quantity", EXPORT_QUANTITY_COLUMN} <= present:
        raise RestockFileError("both quantity and on_hand: which one is the quantity is unclear")
    quantity = EXPORT_QUANTITY_COLUMN if EXPORT_QUANTITY_COLUMN in present else "quantity"
    read = ("sku", "location", quantity, *[name for name in OPTIONAL_COLUMNS if name in present])
    missing = [name for name in read if name not in present]
    if missing:
        raise RestockFileError(f"missing columns: {', '.join(missing)}")
    return _ColumnPlan(read, ("sku", "location", "quantity", *read[3:]))


def _check_type(column: str, data_type: Any) -> None:
    """RestockFileError unless a column's type is one `validate_chunk` can judge."""
    problem = type_problem(column, data_type)
    if problem is not None:
        raise RestockFileError(problem)


def _closing(batches: Iterator[Any], *resources: Any) -> Iterator[Any]:
    """The reader's batches, its errors as RestockFileError, the file closed at the end."""
    rows_read = 0
    try:
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as error:
                raise _broken(error, rows_read) from error
            rows_read += batch.num_rows
            yield batch
    finally:
        for resource in resources:
            resource.close()


# Arrow's CSV reader names the row it fails at, counting the header as row 1 (and skipping
# blank lines, as the reader does).
_ROW_OF_ERROR: Final = re.compile(r"Row #(\d+): ")


def _broken(error: Exception, rows_read: int) -> RestockFileError:
    """A file that breaks past its start, named by data row: the CSV reader's own row when it
    gives one, else the first row that could not be read."""
    found = _ROW_OF_ERROR.search(str(error))
    if found is None:
        where, row = f"after data row {rows_read}", rows_read + 1
    else:
        row = int(found[1]) - 1
        where = f"at data row {row}"
    text = _shortened(_ROW_OF_ERROR.sub("", str(error), count=1))
    return RestockFileError(f"the file is broken {where}: {text}", row)


def _shortened(error: object) -> str:
    text = str(error)
    return text if len(text) <= ERROR_TEXT_MAX else text[: ERROR_TEXT_MAX - 1] + "…"


def _rechunked(batches: Iterator[Any], plan: _ColumnPlan, rows_per_chunk: int) -> Iterator[Any]:
    """Re-cut the reader's batches at every `rows_per_chunk` rows, whatever their sizes."""
    pending: list[Any] = []
    pending_rows = 0
    first_row = 1
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        pending_rows += batch.num_rows
        while pending_rows >= rows_per_chunk:
            table = pa.Table.from_batches(pending)
            pending = [b for b in table.slice(rows_per_chunk).to_batches() if b.num_rows]
            pending_rows -= rows_per_chunk
            yield _numbered(table.slice(0, rows_per_chunk), plan, first_row)
            first_row += rows_per_chunk
    if pending_rows:
        yield _numbered(pa.Table.from_batches(pending), plan, first_row)


def _numbered(table: Any, plan: _ColumnPlan, first_row: int) -> Any:
    # A running sum of ones counts the rows in C (a Python range of them would not be cheap).
    ones = pc.fill_null(pa.nulls(table.num_rows, pa.int64()), 1)
    rows = pc.cumulative_sum(ones, start=first_row - 1)
    named = table.select(list(plan.read)).rename_columns(list(plan.names))
    return named.add_column(0, "row", rows)


# -- validation ---------------------------------------------------------------------------------


def validate_chunk(table: pa.Table, mode: RestockMode) -> tuple[pa.Table, pa.Table]:
    """(good, rejects) of a chunk from `read_chunks`, in row order.

    good has the columns of GOOD_SCHEMA; a missing or empty reason is the mode's default.
    rejects has the columns of REJECT_SCHEMA: each bad row once, with its first failing check
    (RejectReason, checked in the order listed there).
    """
    mode = RestockMode(mode)
    for name in ("row", *REQUIRED_COLUMNS):
        if name not in table.column_names:
            raise RestockFileError(f"missing columns: {name}")
    rows = pc.cast(_flat(table.column("row")), pa.int64())
    sku = _text(table, "sku")
    location = _text(table, "location")
    quantity = _flat(table.column("quantity"))
    _check_type("quantity", quantity.type)
    quantities = judge_quantities(quantity)
    reason, reason_missing = _reasons(table)
    checks = [
        (RejectReason.SKU_MISSING, missing_text(sku)),
        (RejectReason.SKU_NOT_AN_ID, not_an_id(sku)),
        (RejectReason.LOCATION_MISSING, missing_text(location)),
        (RejectReason.LOCATION_NOT_AN_ID, not_an_id(location)),
        (RejectReason.QUANTITY_MISSING, quantities.missing),
        (RejectReason.QUANTITY_NOT_AN_INTEGER, quantities.not_an_integer),
        *_range_checks(quantities, mode),
        (RejectReason.REASON_UNKNOWN, _unknown_reason(reason, reason_missing)),
    ]
    bad = checks[0][1]
    for _, mask in checks[1:]:
        bad = pc.or_(bad, mask)
    good_reason = pc.if_else(reason_missing, pa.scalar(DEFAULT_REASONS[mode]), reason)
    good = pa.table([rows, sku, location, quantities.value, good_reason], schema=GOOD_SCHEMA)
    if not pc.any(bad).as_py():
        return good, REJECT_SCHEMA.empty_table()  # the usual chunk: nothing to filter out
    rejects = _rejects(rows.filter(bad), [(why, mask.filter(bad)) for why, mask in checks])
    return good.filter(pc.invert(bad)), rejects


def _rejects(rows: Any, checks: Sequence[tuple[RejectReason, Any]]) -> Any:
    """Each bad row with the first check it fails: case_when takes the first true condition."""
    conditions = pc.make_struct(*[mask for _, mask in checks])
    reasons = pc.case_when(conditions, *[pa.scalar(str(why)) for why, _ in checks])
    return pa.table([rows, reasons], schema=REJECT_SCHEMA)


def _flat(column: Any) -> Any:
    """One contiguous array: every mask of a chunk then has one layout."""
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _text(table: Any, name: str) -> Any:
    column = _flat(table.column(name))
    _check_type(name, column.type)
    return pc.cast(decoded(column), pa.string())


def _reasons(table: Any) -> tuple[Any, Any]:
    """The reason column (null where none) and where it is missing or empty."""
    if "reason" not in table.column_names:
        reason = pa.nulls(table.num_rows, pa.string())
        return reason, pc.is_null(reason)
    reason = _text(table, "reason")
    return reason, missing_text(reason)


def _unknown_reason(reason: Any, reason_missing: Any) -> Any:
    known = pc.fill_null(pc.is_in(reason, value_set=pa.array(sorted(REASONS))), False)
    return pc.and_(pc.invert(reason_missing), pc.invert(known))


def _range_checks(quantities: Quantities, mode: RestockMode) -> list[tuple[RejectReason, Any]]:
    value = quantities.value
    if mode is RestockMode.DELTA:
        beyond = pc.or_(pc.less(value, -DELTA_MAX), pc.greater(value, DELTA_MAX))
        zero = pc.and_(pc.equal(value, 0), quantities.usable())
        return [
            (RejectReason.QUANTITY_ZERO_DELTA, zero),
            (RejectReason.QUANTITY_OUT_OF_RANGE_DELTA, pc.or_(quantities.huge, beyond)),
        ]
    beyond = pc.or_(pc.less(value, 0), pc.greater(value, ON_HAND_MAX))
    return [(RejectReason.QUANTITY_OUT_OF_RANGE_SET, pc.or_(quantities.huge, beyond))]
