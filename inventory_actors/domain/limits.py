"""Limits of the contract, in one place, so the boundary and the domain agree."""

import re
from typing import Final

# Python's `re` must use fullmatch with it: its `$` also matches before a trailing newline.
ID_PATTERN: Final = r"^[A-Za-z0-9._:/-]{1,128}$"
ID_RE: Final = re.compile(ID_PATTERN)
QUANTITY_MAX: Final = 1_000_000_000
DELTA_MAX: Final = 1_000_000_000
# No SKU-location may hold more than this; keeps every number a small, bounded integer.
ON_HAND_MAX: Final = 1_000_000_000_000
LINES_PER_HOLD_MAX: Final = 100
TTL_MS_MIN: Final = 1_000
TTL_MS_MAX: Final = 86_400_000
REFERENCE_LENGTH_MAX: Final = 256
HOLD_ID_LENGTH_MAX: Final = 64
EXPIRE_PER_COMMAND_MAX: Final = 10_000
PRUNE_PER_COMMAND_MAX: Final = 10_000
# Rows of one restock command: one command is one durable step that no other command of its
# shard interleaves with, so its size bounds how long it delays them.
RESTOCK_ROWS_PER_COMMAND_MAX: Final = 100_000
RESTOCK_MODES: Final = frozenset({"delta", "set"})

REASONS: Final = frozenset(
    {
        "received",
        "restock",
        "returned",
        "correction",
        "cycle_count",
        "damaged",
        "shrinkage",
        "other",
    }
)


def is_valid_id(value: object) -> bool:
    """True for a SKU or location id of the contract."""
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None
