"""`inventory export` and `inventory export-ledger`: the stock, and the log as events, written
to Parquet files that pandas, DuckDB or Spark read as they are.

Each file is written under a temporary name and renamed when complete, so a file at `--out`
is always whole.
"""

import argparse
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

EXPORT_TIMEOUT_SECONDS = 600.0
LOG_PAGE_RECORDS = 1_000


def add_export_parsers(commands: Any, default_data_dir: str) -> None:
    export = commands.add_parser(
        "export", help="write every SKU-location (with versions and shard LSNs) to Parquet"
    )
    ledger = commands.add_parser("export-ledger", help="write the log as events to Parquet")
    ledger.add_argument(
        "--since", type=_instant, default=None, help="only events at or after this ISO-8601 time"
    )
    for parser, handler in ((export, cmd_export), (ledger, cmd_export_ledger)):
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--data-dir", default=default_data_dir)
        parser.add_argument("--address", default="auto", help="the Ray cluster's address")
        parser.add_argument("--namespace", default="inventory", help=argparse.SUPPRESS)
        parser.set_defaults(handler=handler)


def _instant(text: str) -> datetime:
    """An ISO-8601 time; without a zone, UTC."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.now().astimezone().tzinfo)


def _client(args: argparse.Namespace) -> Any:
    import ray

    from inventory_actors.cluster.client import InventoryClient

    if not ray.is_initialized():
        ray.init(address=args.address, namespace=args.namespace, log_to_driver=False)
    return InventoryClient.connect(args.data_dir, namespace=args.namespace)


@contextmanager
def _parquet(out: Path, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A writer to `out`, which appears only once the file is complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    try:
        with pq.ParquetWriter(partial, schema) as writer:
            yield writer
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def cmd_export(args: argparse.Namespace) -> int:
    import ray

    from persistence.exports import STOCK_SCHEMA

    started = time.perf_counter()
    client = _client(args)
    # Every shard builds its table at once; they are fetched and written one at a time.
    refs = [shard.export_levels.remote() for shard in client.shards]
    rows = 0
    with _parquet(args.out, STOCK_SCHEMA) as writer:
        for shard_id, ref in enumerate(refs):
            table = ray.get(ref, timeout=EXPORT_TIMEOUT_SECONDS)
            writer.write_table(table)
            rows += table.num_rows
            lsn = table["lsn"][0].as_py() if table.num_rows else "-"
            print(f"shard {shard_id}: {table.num_rows:,} SKU-locations at lsn {lsn}")
    seconds = time.perf_counter() - started
    size_mib = args.out.stat().st_size / 2**20
    print(f"{rows:,} SKU-locations of {len(refs)} shards in {args.out} ({size_mib:.1f} MiB)")
    print(f"{seconds:.2f} s")
    return 0


def cmd_export_ledger(args: argparse.Namespace) -> int:
    from inventory_actors.feed.ledger_rows import LEDGER_SCHEMA

    started = time.perf_counter()
    client = _client(args)
    since = None if args.since is None else pa.scalar(args.since, LEDGER_SCHEMA.field("at").type)
    rows = 0
    with _parquet(args.out, LEDGER_SCHEMA) as writer:
        for shard_id, shard in enumerate(client.shards):
            for page in _shard_ledger(shard_id, shard):
                table = page if since is None else page.filter(pc.greater_equal(page["at"], since))
                if table.num_rows:
                    writer.write_table(table)
                    rows += table.num_rows
    seconds = time.perf_counter() - started
    print(f"{rows:,} ledger rows of {len(client.shards)} shards in {args.out} ({seconds:.2f} s)")
    return 0


def _shard_ledger(shard_id: int, shard: Any) -> Iterator[pa.Table]:
    """One shard's log as ledger tables, a page at a time; the next page is read while this
    one is turned into rows."""
    import ray

    from inventory_actors.feed.ledger_rows import ledger_table

    ref = shard.read_log.remote(0, LOG_PAGE_RECORDS)
    while True:
        page = ray.get(ref, timeout=EXPORT_TIMEOUT_SECONDS)
        if not page:
            return
        ref = shard.read_log.remote(page[-1][0], LOG_PAGE_RECORDS)
        yield ledger_table(shard_id, page)
