"""Rows of a restock chunk -> the shards that own their SKUs, a column at a time.

A chunk of 100,000 rows names far fewer distinct SKUs, so the owner is asked once per distinct
SKU (`PartitionMap.owner`, as on every other path, so a restock lands where reserves look) and
spread back to the rows with a take.
"""

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from inventory_actors.shard.partitioning import PartitionMap


def shard_ids_of(skus: pa.Array | pa.ChunkedArray, partition: PartitionMap) -> pa.Array:
    """The shard (int32) of each SKU under `partition`; null for a null SKU."""
    flat = skus.combine_chunks() if isinstance(skus, pa.ChunkedArray) else skus
    # A dictionary column's dictionary may hold values no row uses, or repeat one: re-encode.
    encoded = pc.dictionary_encode(pc.cast(flat, pa.string()))
    distinct = encoded.dictionary.to_pylist()
    owner = partition.owner
    shard_of_distinct = pa.array([owner(sku=sku) for sku in distinct], pa.int32())
    return pc.take(shard_of_distinct, encoded.indices)


def split_by_shard(good: pa.Table, partition: PartitionMap) -> dict[int, pa.Table]:
    """`good`'s rows grouped by shard, each group in its original order; only shards that
    have rows appear, and every row is in exactly one group."""
    shard_ids = shard_ids_of(good.column("sku"), partition)
    if shard_ids.null_count:
        raise ValueError("a row without a SKU has no shard")
    shard_counts = _rows_per_shard(shard_ids)
    if len(shard_counts) == 1:
        return {shard_counts[0][0]: good}
    # A stable sort keeps each shard's rows in file order; each shard is then one slice.
    order = pc.sort_indices(shard_ids)
    grouped = good.take(order)
    tables: dict[int, pa.Table] = {}
    start = 0
    for shard, rows in shard_counts:
        tables[shard] = grouped.slice(start, rows)
        start += rows
    return tables


def _rows_per_shard(shard_ids: Any) -> list[tuple[int, int]]:
    """(shard, row count) of each shard with rows, by shard id: the order the sort puts them."""
    counts = pc.value_counts(shard_ids)
    shards = counts.field("values").to_pylist()
    rows = counts.field("counts").to_pylist()
    return sorted(zip(shards, rows, strict=True))
