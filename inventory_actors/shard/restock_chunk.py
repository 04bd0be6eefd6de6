"""One shard's part of one chunk of a restock job: what travels to the shard, as Arrow data
through the object store, and becomes one durable command there."""

from dataclasses import dataclass

import pyarrow as pa

from inventory_actors.domain import RestockRows
from inventory_actors.shard.codec import restock_log_text
from inventory_actors.shard.protocol import Submission

# The columns a chunk carries, as the reader's validation leaves them.
CHUNK_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("sku", pa.string()),
        ("location", pa.string()),
        ("quantity", pa.int64()),
        ("reason", pa.string()),
    ]
)


def chunk_key(job_id: str, chunk: int, shard_id: int) -> str:
    """The idempotency key of a job's chunk on one shard: a re-run sends the same chunk with
    the same key, and the shard applies it once."""
    return f"restock:{job_id}:{chunk}:{shard_id}"


@dataclass(frozen=True)
class RestockChunk:
    job_id: str
    chunk: int
    shard_id: int
    mode: str
    # What makes two chunks sent with one key the same: the job's content digest.
    fingerprint: str
    table: pa.Table

    def submission(self) -> tuple[Submission, str]:
        """The command this chunk becomes, and the text its log record keeps of it
        (`restock_log_text`); ValueError when the table is not a chunk's."""
        table = self.table
        if not table.schema.equals(CHUNK_SCHEMA):
            raise ValueError(f"a restock chunk's columns are {CHUNK_SCHEMA}, not {table.schema}")
        rows, skus, locations, quantities, reasons = (
            tuple(table.column(name).to_pylist()) for name in CHUNK_SCHEMA.names
        )
        command = RestockRows(
            self.job_id, self.chunk, self.mode, rows, skus, locations, quantities, reasons
        )
        key = chunk_key(self.job_id, self.chunk, self.shard_id)
        return Submission(command, key, self.fingerprint), restock_log_text(command)
