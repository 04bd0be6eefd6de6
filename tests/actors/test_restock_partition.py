"""A restock chunk's rows go to the shards that own their SKUs: the same hash as every other
path, each row exactly once, in file order within a shard. No Ray."""

import random

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_actors.restock.partition import shard_ids_of, split_by_shard
from inventory_actors.shard.partitioning import PartitionMap

ID_CHARACTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-"
SHARD_COUNTS = (1, 2, 3, 4, 7, 16, 1024)
ids = st.text(alphabet=ID_CHARACTERS, min_size=1, max_size=128)
any_text = st.text(max_size=40)


def shuffled_map(shard_count: int, seed: int) -> PartitionMap:
    """A map that is not the initial one, as after shards were split or moved."""
    generator = random.Random(seed)
    return PartitionMap(shard_count, tuple(generator.randrange(shard_count) for _ in range(4096)))


@settings(max_examples=100, deadline=None)
@given(
    skus=st.lists(st.one_of(ids, any_text), max_size=60),
    shard_count=st.sampled_from(SHARD_COUNTS),
    shuffled=st.booleans(),
)
def test_the_shard_of_each_sku_is_the_partition_maps(
    skus: list[str], shard_count: int, shuffled: bool
) -> None:
    partition = (
        shuffled_map(shard_count, len(skus)) if shuffled else PartitionMap.initial(shard_count)
    )
    shard_ids = shard_ids_of(pa.array(skus, pa.string()), partition)
    assert shard_ids.type == pa.int32()
    assert shard_ids.to_pylist() == [partition.owner(sku=sku) for sku in skus]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(ids, max_size=20), max_size=5), st.sampled_from(SHARD_COUNTS))
def test_a_chunked_sku_column_gets_the_same_shards(chunks: list[list[str]], count: int) -> None:
    partition = PartitionMap.initial(count)
    skus = pa.chunked_array(chunks, pa.string())
    expected = [partition.owner(sku=sku) for chunk in chunks for sku in chunk]
    assert shard_ids_of(skus, partition).to_pylist() == expected


def test_repeated_skus_and_a_large_string_column_get_the_same_shards() -> None:
    partition = PartitionMap.initial(7)
    skus = [f"sku-{i % 13}" for i in range(500)]
    expected = [partition.owner(sku=sku) for sku in skus]
    assert shard_ids_of(pa.array(skus, pa.large_string()), partition).to_pylist() == expected
    dictionary = pa.array(skus).dictionary_encode()
    assert shard_ids_of(dictionary, partition).to_pylist() == expected


def test_a_null_sku_has_no_shard() -> None:
    shard_ids = shard_ids_of(pa.array(["a", None, "b"]), PartitionMap.initial(4))
    assert shard_ids.to_pylist()[1] is None


def good_table(skus: list[str]) -> pa.Table:
    count = len(skus)
    return pa.table(
        {
            "row": pa.array(range(1, count + 1), pa.int64()),
            "sku": pa.array(skus, pa.string()),
            "location": pa.array([f"L{i % 3}" for i in range(count)], pa.string()),
            "quantity": pa.array(range(count), pa.int64()),
            "reason": pa.array(["restock"] * count, pa.string()),
        }
    )


@settings(max_examples=100, deadline=None)
@given(
    skus=st.lists(st.one_of(ids, st.sampled_from(["a", "b", "c"])), max_size=80),
    shard_count=st.sampled_from(SHARD_COUNTS),
    shuffled=st.booleans(),
)
def test_splitting_keeps_every_row_once_in_file_order_per_shard(
    skus: list[str], shard_count: int, shuffled: bool
) -> None:
    partition = shuffled_map(shard_count, 7) if shuffled else PartitionMap.initial(shard_count)
    good = good_table(skus)
    by_shard = split_by_shard(good, partition)
    expected: dict[int, list[int]] = {}
    for row, sku in enumerate(skus, start=1):
        expected.setdefault(partition.owner(sku=sku), []).append(row)
    assert {shard: table.column("row").to_pylist() for shard, table in by_shard.items()} == expected
    for shard, table in by_shard.items():
        assert table.schema == good.schema
        assert all(partition.owner(sku=sku) == shard for sku in table.column("sku").to_pylist())
    assert sum(table.num_rows for table in by_shard.values()) == good.num_rows


def test_a_chunk_of_one_shard_is_returned_whole() -> None:
    good = good_table(["a", "a", "a"])
    by_shard = split_by_shard(good, PartitionMap.initial(1))
    assert list(by_shard) == [0]
    assert by_shard[0].equals(good)


def test_an_empty_chunk_goes_to_no_shard() -> None:
    assert split_by_shard(good_table([]), PartitionMap.initial(4)) == {}


def test_a_row_without_a_sku_cannot_be_split() -> None:
    good = good_table(["a"]).set_column(1, "sku", pa.array([None], pa.string()))
    with pytest.raises(ValueError, match="SKU"):
        split_by_shard(good, PartitionMap.initial(4))
