"""SKU -> slot -> shard: a stable hash, hold ids that name their slot, a persisted map."""

import json
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_actors.shard.partitioning import (
    SLOT_COUNT,
    PartitionMap,
    load_or_create,
    map_path,
    new_hold_id,
    shard_path,
    slot_of,
    slot_of_hold,
    slots_of,
)


@pytest.mark.parametrize(
    ("sku", "slot"),
    [
        # CRC-32 of "123456789" is the check value 0xCBF43926; 0x926 = 2342.
        ("123456789", 0x926),
        ("A", 0xD3D99E8B % 4096),
        ("SKU-1", 0xEE072BB4 % 4096),
        ("sku-00042", 0xA158B9F7 % 4096),
        ("Grüße", 0xFBD37071 % 4096),
        ("", 0),
    ],
)
def test_the_slot_of_a_sku_is_its_crc32_modulo_the_slot_count(sku: str, slot: int) -> None:
    assert SLOT_COUNT == 4096
    assert slot_of(sku) == slot


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_every_sku_has_a_slot_in_range_given_by_its_utf8_crc32(sku: str) -> None:
    slot = slot_of(sku)
    assert 0 <= slot < SLOT_COUNT
    assert slot == zlib.crc32(sku.encode("utf-8")) % SLOT_COUNT


@settings(max_examples=200, deadline=None)
@given(st.integers(0, SLOT_COUNT - 1))
def test_a_new_hold_id_names_its_home_slot(slot: int) -> None:
    hold_id = new_hold_id(slot)
    assert hold_id.startswith("r_") and len(hold_id) == 25
    assert hold_id[5:].isalnum() and hold_id[5:] == hold_id[5:].lower()
    assert slot_of_hold(hold_id) == slot


def test_hold_ids_without_a_seed_differ() -> None:
    assert len({new_hold_id(7) for _ in range(100)}) == 100


def test_a_seeded_hold_id_is_the_same_every_time() -> None:
    assert new_hold_id(5, b"seed-1") == new_hold_id(5, b"seed-1") == "r_005t913ywwc99cd8pig0r90"
    assert new_hold_id(4095, b"cart-42") == "r_fffjh9a4a3x5siypud1sn5c"
    assert new_hold_id(5, b"seed-2") != new_hold_id(5, b"seed-1")
    assert new_hold_id(6, b"seed-1")[5:] == new_hold_id(5, b"seed-1")[5:]


@pytest.mark.parametrize(
    "hold_id", ["h1", "cart-42", "r_", "r_zzz" + "a" * 20, "r_00a" + "a" * 19, "r_00a" + "a" * 21]
)
def test_any_other_hold_id_hashes_like_a_sku(hold_id: str) -> None:
    assert slot_of_hold(hold_id) == slot_of(hold_id)


def test_a_hold_id_that_looks_like_a_negative_slot_still_gets_a_slot_in_range() -> None:
    hold_id = "r_-1f" + "a" * 20
    assert 0 <= slot_of_hold(hold_id) < SLOT_COUNT


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="r_+ 0123456789abcdefxyz", min_size=3, max_size=25))
def test_any_hold_id_without_a_minus_sign_maps_to_a_slot_in_range(tail: str) -> None:
    assert 0 <= slot_of_hold("r_" + tail) < SLOT_COUNT


def test_the_initial_map_spreads_slots_round_robin() -> None:
    partition = PartitionMap.initial(3)
    assert partition.slots[:6] == (0, 1, 2, 0, 1, 2)
    assert partition.owner(slot=4095) == 4095 % 3
    assert partition.owner(sku="123456789") == 2342 % 3
    assert partition.owner(hold=new_hold_id(10)) == 10 % 3


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.sampled_from([1, 2, 3, 7, 1024]))
def test_the_owner_of_a_sku_a_key_and_a_hold_is_the_owner_of_its_slot(
    text: str, shard_count: int
) -> None:
    partition = PartitionMap.initial(shard_count)
    assert partition.owner(sku=text) == partition.owner(slot=slot_of(text))
    # An idempotency key's claim is placed like a SKU.
    assert partition.owner(key=text) == partition.owner(sku=text)
    assert partition.owner(hold=text) == partition.owner(slot=slot_of_hold(text))
    hold_id = new_hold_id(slot_of(text), text.encode())
    assert partition.owner(hold=hold_id) == partition.owner(sku=text)


@pytest.mark.parametrize(
    "named", [{}, {"sku": "A", "hold": "A"}, {"sku": "A", "slot": 1}, {"key": "k", "hold": "h"}]
)
def test_the_owner_is_asked_of_exactly_one_thing(named: dict[str, object]) -> None:
    with pytest.raises(TypeError, match="exactly one"):
        PartitionMap.initial(2).owner(**named)  # type: ignore[call-overload]


@pytest.mark.parametrize("slot", [-1, SLOT_COUNT])
def test_the_owner_of_a_slot_outside_the_map_is_refused(slot: int) -> None:
    with pytest.raises(ValueError, match="slot"):
        PartitionMap.initial(2).owner(slot=slot)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=50))
def test_the_slots_of_many_skus_are_their_slots(skus: list[str]) -> None:
    assert slots_of(skus) == {slot_of(sku) for sku in skus}


@pytest.mark.parametrize("count", [0, -1, 1025])
def test_a_shard_count_outside_one_to_1024_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="shard count"):
        PartitionMap.initial(count)


def test_a_map_with_missing_slots_or_unknown_shards_is_refused() -> None:
    with pytest.raises(ValueError, match="slots"):
        PartitionMap(2, (0, 1))
    with pytest.raises(ValueError, match="does not exist"):
        PartitionMap(2, (0,) * 4095 + (2,))


def test_a_map_comes_back_equal_from_json() -> None:
    partition = PartitionMap.initial(7)
    text = partition.to_json()
    assert PartitionMap.from_json(text) == partition
    body = json.loads(text)
    assert body["hash"] == "crc32-utf8" and body["slot_count"] == SLOT_COUNT


def test_a_map_of_another_format_is_refused() -> None:
    body = json.loads(PartitionMap.initial(2).to_json())
    with pytest.raises(ValueError, match="unsupported"):
        PartitionMap.from_json(json.dumps({**body, "format": 2}))
    with pytest.raises(ValueError, match="unsupported"):
        PartitionMap.from_json(json.dumps({**body, "slot_count": 1024}))


def test_the_map_is_created_once_and_then_read_back(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    created = load_or_create(data_dir, 3)
    assert map_path(data_dir).exists()
    assert not map_path(data_dir).with_suffix(".tmp").exists()
    assert load_or_create(data_dir, None) == created
    assert load_or_create(data_dir, 3) == created
    assert PartitionMap.from_json(map_path(data_dir).read_text()) == created


def test_a_new_data_directory_gets_four_shards_by_default(tmp_path: Path) -> None:
    assert load_or_create(tmp_path, None).shard_count == 4


def test_asking_an_existing_map_for_another_shard_count_is_refused(tmp_path: Path) -> None:
    load_or_create(tmp_path, 3)
    with pytest.raises(ValueError, match="created with 3 shards"):
        load_or_create(tmp_path, 4)
    assert load_or_create(tmp_path, None).shard_count == 3


def test_each_shard_has_its_own_file_in_the_data_directory(tmp_path: Path) -> None:
    assert shard_path(tmp_path, 7) == tmp_path / "shards" / "shard-0007.sqlite3"
