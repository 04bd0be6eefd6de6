"""sku -> slot -> shard. The slot hash is stable across processes and versions (never Python's
`hash()`); the slot -> shard map is persisted in the data directory, so shards can later be
split or moved by rewriting the map.
"""

import hashlib
import json
import os
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import overload

SLOT_COUNT = 4096
MAP_FORMAT = 1
SHARD_COUNT_MAX = 1024
_HOLD_PREFIX = "r_"
_HOLD_TOKEN_LENGTH = 20
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_HEX_DIGITS = frozenset("0123456789abcdef")
# The token's characters are base-36 digits of the digest taken 5 bits apart (part of the id
# format: a retried reserve must name the same hold, across versions of the client).
_TOKEN_SHIFTS = tuple(5 * i for i in range(_HOLD_TOKEN_LENGTH))


def slot_of(key: str) -> int:
    """The slot of a SKU: CRC-32 of its UTF-8 bytes, modulo the slot count."""
    return zlib.crc32(key.encode("utf-8")) % SLOT_COUNT


def slots_of(keys: Iterable[str]) -> set[int]:
    """The distinct slots of many SKUs: `slot_of` of each, in one pass without a call per SKU
    (a restock chunk names up to 100,000 of them; this takes a fifth of the time)."""
    crc32 = zlib.crc32
    return {crc32(key.encode("utf-8")) % SLOT_COUNT for key in keys}


def new_hold_id(slot: int, seed: bytes | None = None) -> str:
    """A hold id that names its home slot: `r_` + 3 hex digits + 20 characters.

    With `seed` (e.g. an idempotency key) the id is the same every time, so a retried reserve
    is the same command.
    """
    if not 0 <= slot < SLOT_COUNT:
        raise ValueError(f"slot must be 0 to {SLOT_COUNT - 1}")
    raw = seed if seed is not None else secrets.token_bytes(20)
    digest = int.from_bytes(hashlib.sha256(raw).digest(), "big")
    token = "".join([_ALPHABET[(digest >> shift) % 36] for shift in _TOKEN_SHIFTS])
    return f"{_HOLD_PREFIX}{slot:03x}{token}"


def slot_of_hold(hold_id: str) -> int:
    """The home slot a hold id names; any other id hashes like a SKU."""
    digits = hold_id[2:5]
    if (
        hold_id.startswith(_HOLD_PREFIX)
        and len(hold_id) == 5 + _HOLD_TOKEN_LENGTH
        and _HEX_DIGITS.issuperset(digits)
    ):
        return int(digits, 16) % SLOT_COUNT
    return slot_of(hold_id)


@dataclass(frozen=True)
class PartitionMap:
    """Which shard owns each slot."""

    shard_count: int
    slots: tuple[int, ...]

    @classmethod
    def initial(cls, shard_count: int) -> "PartitionMap":
        if not 1 <= shard_count <= SHARD_COUNT_MAX:
            raise ValueError(f"shard count must be 1 to {SHARD_COUNT_MAX}")
        return cls(shard_count, tuple(slot % shard_count for slot in range(SLOT_COUNT)))

    def __post_init__(self) -> None:
        if len(self.slots) != SLOT_COUNT:
            raise ValueError(f"a partition map has {SLOT_COUNT} slots, not {len(self.slots)}")
        if any(not 0 <= shard < self.shard_count for shard in self.slots):
            raise ValueError("a slot names a shard that does not exist")

    @overload
    def owner(self, *, sku: str) -> int: ...
    @overload
    def owner(self, *, hold: str) -> int: ...
    @overload
    def owner(self, *, key: str) -> int: ...
    @overload
    def owner(self, *, slot: int) -> int: ...

    def owner(
        self,
        *,
        sku: str | None = None,
        hold: str | None = None,
        key: str | None = None,
        slot: int | None = None,
    ) -> int:
        """The shard that owns one thing, named by exactly one keyword:

        - `sku`: the SKU's stock, by the SKU's slot;
        - `hold`: a reservation, by the home slot its hold id names: the shard that places and
          decides it (its parts on other shards are theirs, by their lines' SKUs);
        - `key`: an idempotency key's claim (see `ClaimKey`), by the key's slot;
        - `slot`: a slot.

        The one answer to "which shard owns this": clients route with it and every shard checks
        what it is sent with it (`shard.ownership`), so the two cannot disagree.
        """
        if (sku is None) + (hold is None) + (key is None) + (slot is None) != 3:
            raise TypeError("name exactly one of sku, hold, key and slot")
        if sku is not None:
            return self.slots[slot_of(sku)]
        if hold is not None:
            return self.slots[slot_of_hold(hold)]
        if key is not None:
            return self.slots[slot_of(key)]
        assert slot is not None
        # A negative index would silently read a slot from the end.
        if not 0 <= slot < SLOT_COUNT:
            raise ValueError(f"slot must be 0 to {SLOT_COUNT - 1}")
        return self.slots[slot]

    def to_json(self) -> str:
        body = {
            "format": MAP_FORMAT,
            "hash": "crc32-utf8",
            "slot_count": SLOT_COUNT,
            "shard_count": self.shard_count,
            "slots": list(self.slots),
        }
        return json.dumps(body)

    @classmethod
    def from_json(cls, text: str) -> "PartitionMap":
        body = json.loads(text)
        if body.get("format") != MAP_FORMAT or body.get("slot_count") != SLOT_COUNT:
            raise ValueError("unsupported partition map")
        return cls(int(body["shard_count"]), tuple(int(s) for s in body["slots"]))


def map_path(data_dir: Path) -> Path:
    return data_dir / "partition-map.json"


def shard_path(data_dir: Path, shard_id: int) -> Path:
    return data_dir / "shards" / f"shard-{shard_id:04d}.sqlite3"


def load_or_create(data_dir: Path, shard_count: int | None) -> PartitionMap:
    """The data directory's map; created with `shard_count` shards (default 4) on first use.
    Asking for a different count later is an error: the count is fixed at creation."""
    path = map_path(data_dir)
    if path.exists():
        existing = PartitionMap.from_json(path.read_text())
        if shard_count is not None and shard_count != existing.shard_count:
            raise ValueError(
                f"{data_dir} was created with {existing.shard_count} shards, not {shard_count}"
            )
        return existing
    created = PartitionMap.initial(4 if shard_count is None else shard_count)
    data_dir.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as handle:
        handle.write(created.to_json())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return created
