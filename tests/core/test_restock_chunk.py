"""A restock chunk becomes one keyed command; a table that is not a chunk's is refused."""

import json

import pyarrow as pa
import pytest

from inventory_actors.domain import RestockRows
from inventory_actors.shard.restock_chunk import CHUNK_SCHEMA, RestockChunk


def chunk(table: pa.Table) -> RestockChunk:
    return RestockChunk("rj-1", 4, 2, "delta", "digest", table)


def test_a_chunk_becomes_one_command_with_its_key_and_a_short_log_text() -> None:
    table = pa.table(
        {
            "row": [7, 9],
            "sku": ["A", "B"],
            "location": ["x", "y"],
            "quantity": [5, -1],
            "reason": ["restock", "damaged"],
        },
        schema=CHUNK_SCHEMA,
    )
    submission, log_text = chunk(table).submission()
    assert submission.command == RestockRows(
        "rj-1", 4, "delta", (7, 9), ("A", "B"), ("x", "y"), (5, -1), ("restock", "damaged")
    )
    assert submission.idempotency_key == "restock:rj-1:4:2"
    assert submission.fingerprint == "digest"
    assert json.loads(log_text) == ["restock-rows", "rj-1", 4, "delta", 2]


def test_a_table_of_other_columns_is_refused() -> None:
    wrong = pa.table({"row": [1], "sku": ["A"], "location": ["x"], "quantity": [1.5]})
    with pytest.raises(ValueError, match="columns"):
        chunk(wrong).submission()
