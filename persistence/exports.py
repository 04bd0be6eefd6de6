"""Stock as an Arrow table: every SKU-location of a shard with its SKU's version and the
shard's LSN at the moment it was read. `inventory export` writes these to Parquet."""

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

STOCK_SCHEMA = pa.schema(
    [
        ("sku", pa.string()),
        ("location", pa.string()),
        ("on_hand", pa.int64()),
        ("reserved", pa.int64()),
        ("available", pa.int64()),
        ("version", pa.int64()),
        ("shard", pa.int32()),
        ("lsn", pa.int64()),
    ]
)


def stock_table(shard_id: int, lsn: int, columns: Sequence[list[Any]]) -> pa.Table:
    """The levels of snapshot columns (`SnapshotIO.export_sku_columns`: location names, SKU
    ids, versions, levels per SKU, location index, on_hand, reserved), sorted by SKU then
    location. SKU ids and versions are spread to their levels by index, not per row."""
    names, sku_ids, versions, counts, where, on_hands, reserveds = columns
    owner = np.repeat(np.arange(len(sku_ids), dtype=np.int64), np.asarray(counts, np.int64))
    on_hand = pa.array(on_hands, pa.int64())
    reserved = pa.array(reserveds, pa.int64())
    levels = len(where)
    table = pa.table(
        [
            pa.array(sku_ids, pa.string()).take(owner),
            pa.array(names, pa.string()).take(pa.array(where, pa.int64())),
            on_hand,
            reserved,
            pc.subtract(on_hand, reserved),
            pa.array(versions, pa.int64()).take(owner),
            pa.array(np.full(levels, shard_id, np.int32)),
            pa.array(np.full(levels, lsn, np.int64)),
        ],
        schema=STOCK_SCHEMA,
    )
    return table.sort_by([("sku", "ascending"), ("location", "ascending")])
