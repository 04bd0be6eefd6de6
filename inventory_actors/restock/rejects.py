"""The file of every rejected row of a job that `inventory restock` runs: `row,reason` as CSV, in
row order, written as the rows are found. A resumed job keeps what its earlier attempts wrote
for the chunks it skips (they are not read again)."""

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

SCHEMA = pa.schema([("row", pa.int64()), ("reason", pa.string())])


class RejectsFile:
    def __init__(self, path: Path, keep_before_row: int = 1) -> None:
        """`keep_before_row`: the first row this attempt applies. The file's rejects of earlier
        rows (written by earlier attempts, of the chunks done) are kept; the rest are dropped,
        as this attempt finds them again."""
        self.path = path
        self.rows = 0
        self._writer: pa_csv.CSVWriter | None = None
        kept = _rows_before(path, keep_before_row)
        if kept is None or kept.num_rows == 0:
            path.unlink(missing_ok=True)
            return
        # Rewritten under another name and renamed: a crash meanwhile leaves the old file.
        # The writer stays open on the renamed file and goes on appending to it.
        partial = path.with_name(path.name + ".partial")
        self._writer = pa_csv.CSVWriter(str(partial), SCHEMA)
        self._writer.write_table(kept)
        os.replace(partial, path)
        self.rows = kept.num_rows

    def write(self, rejects: list[tuple[int, str]]) -> None:
        rows, reasons = zip(*rejects, strict=True)
        table = pa.table([pa.array(rows, pa.int64()), pa.array(reasons, pa.string())], SCHEMA)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = pa_csv.CSVWriter(str(self.path), SCHEMA)
        self._writer.write_table(table)
        self.rows += len(rejects)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _rows_before(path: Path, row: int) -> pa.Table | None:
    """The rejects of `path` before `row`; None when there are none to keep (a new job, no
    file, or a file that is not one of these)."""
    if row <= 1 or not path.is_file():
        return None
    try:
        table = pa_csv.read_csv(
            path,
            convert_options=pa_csv.ConvertOptions(
                column_types=SCHEMA, include_columns=SCHEMA.names
            ),
        )
    except (pa.ArrowException, OSError):
        return None
    if not table.schema.equals(SCHEMA):
        return None
    return table.filter(pc.less(table.column("row"), row))
