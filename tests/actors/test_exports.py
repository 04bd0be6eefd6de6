"""`inventory export` and `inventory export-ledger` against real shards: the files hold exactly
the stock and the log, pandas-free tools read them as they are, and an export imported into a
fresh data directory reproduces the stock."""

import argparse
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import ray

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import LineRequest, TransferStock
from inventory_actors.feed.ledger_rows import LEDGER_SCHEMA
from inventory_actors.restock.runtime import jobs_actor
from inventory_actors.shard.protocol import ShardStatus
from inventory_cli.main import build_parser
from persistence.exports import STOCK_SCHEMA
from tests.actors.test_restock_jobs import run_job
from tests.conftest import ClientFactory

pytestmark = pytest.mark.ray


def query(sql: str) -> list[tuple[object, ...]]:
    """DuckDB's answer to `sql`, as a user would run it on the file."""
    with duckdb.connect() as connection:
        rows: list[tuple[object, ...]] = connection.execute(sql).fetchall()
        return rows


def run_cli(*argv: str) -> None:
    """An `inventory` command in this process, against the session's cluster."""
    args: argparse.Namespace = build_parser().parse_args(list(argv))
    assert args.handler(args) == 0


@pytest.fixture
def busy_shards(
    make_client: ClientFactory, tmp_path: Path
) -> Iterator[tuple[InventoryClient, str]]:
    """Three shards after adjustments, counts, transfers and holds committed, released and
    still active."""
    namespace = f"export-{os.getpid()}-{time.monotonic_ns()}"
    client = make_client(shard_count=3, data_dir=tmp_path / "data", namespace=namespace)
    for index in range(60):
        sku = f"E-{index}"
        client.adjust(sku, "berlin", 20 + index, reference=f"po-{index}")
        client.adjust(sku, "paris", 5)
        if index % 3 == 0:
            client.set_on_hand(sku, "paris", 9)
        if index % 4 == 0:
            client.run(TransferStock(sku, "berlin", "rome", 2))
        hold = client.reserve([LineRequest(sku, 3, "berlin")])
        if index % 2 == 0:
            client.commit(hold.hold_id)
        elif index % 5 == 0:
            client.release(hold.hold_id)
    yield client, namespace


def levels_of(client: InventoryClient, skus: list[str]) -> dict[tuple[str, str], tuple[int, int]]:
    return {
        (view.sku, level.location): (level.on_hand, level.reserved)
        for view in client.get_skus(skus)
        if view is not None
        for level in view.locations
    }


def test_export_writes_every_level_with_versions_and_each_shards_lsn(
    busy_shards: tuple[InventoryClient, str], tmp_path: Path
) -> None:
    client, namespace = busy_shards
    out = tmp_path / "stock.parquet"
    run_cli(
        "export", "--out", str(out), "--data-dir", str(tmp_path / "data"), "--namespace", namespace
    )
    table = pq.read_table(out)
    assert table.schema == STOCK_SCHEMA
    skus = [f"E-{i}" for i in range(60)]
    exported = {
        (row["sku"], row["location"]): (row["on_hand"], row["reserved"])
        for row in table.to_pylist()
    }
    assert exported == levels_of(client, skus)
    assert pc.all(
        pc.equal(table["available"], pc.subtract(table["on_hand"], table["reserved"]))
    ).as_py()
    versions = {row["sku"]: row["version"] for row in table.to_pylist()}
    assert versions == {view.sku: view.version for view in client.get_skus(skus) if view}
    statuses = [s for s in client.status() if isinstance(s, ShardStatus)]
    lsns = {row["shard"]: row["lsn"] for row in table.select(["shard", "lsn"]).to_pylist()}
    assert lsns == {s.shard_id: s.last_lsn for s in statuses}
    for shard_id, lsn in lsns.items():
        assert all(
            client.partition.owner(sku=row["sku"]) == shard_id
            for row in table.filter(pc.equal(table["shard"], shard_id)).to_pylist()
        )
        assert lsn > 0
    # DuckDB reads the file as it is, with its types.
    [found] = query(f"SELECT count(*), sum(on_hand), sum(reserved) FROM '{out}'")
    assert found == (
        len(exported),
        sum(v[0] for v in exported.values()),
        sum(v[1] for v in exported.values()),
    )
    kinds = {row[0]: row[1] for row in query(f"DESCRIBE SELECT * FROM '{out}'")}
    assert kinds["on_hand"] == "BIGINT" and kinds["sku"] == "VARCHAR"


def test_an_export_imported_into_a_fresh_data_directory_reproduces_the_stock(
    busy_shards: tuple[InventoryClient, str], make_client: ClientFactory, tmp_path: Path
) -> None:
    client, namespace = busy_shards
    out = tmp_path / "stock.parquet"
    run_cli(
        "export", "--out", str(out), "--data-dir", str(tmp_path / "data"), "--namespace", namespace
    )
    fresh_dir, fresh_namespace = tmp_path / "fresh", f"{namespace}-fresh"
    fresh = make_client(shard_count=2, data_dir=fresh_dir, namespace=fresh_namespace)
    try:
        record = run_job(fresh, out, "set", fresh_dir, fresh_namespace)
        assert record.status == "succeeded", record
        skus = [f"E-{i}" for i in range(60)]
        on_hand = {key: value[0] for key, value in levels_of(client, skus).items()}
        assert {key: value[0] for key, value in levels_of(fresh, skus).items()} == on_hand
        # Holds are not stock: the fresh directory has none.
        assert all(value[1] == 0 for value in levels_of(fresh, skus).values())
    finally:
        ray.kill(jobs_actor(fresh_dir, fresh_namespace), no_restart=True)


def test_export_ledger_writes_every_change_and_since_filters_by_time(
    busy_shards: tuple[InventoryClient, str], tmp_path: Path
) -> None:
    client, namespace = busy_shards
    data_dir = str(tmp_path / "data")
    out = tmp_path / "ledger.parquet"
    run_cli("export-ledger", "--out", str(out), "--data-dir", data_dir, "--namespace", namespace)
    table = pq.read_table(out)
    assert table.schema == LEDGER_SCHEMA
    counts = {row[0]: row[1] for row in query(f"SELECT type, count(*) FROM '{out}' GROUP BY type")}
    assert counts["adjusted"] == 120
    assert counts["set"] == 20
    assert counts["transferred"] == 2 * 15
    assert counts["placed"] == 60
    assert counts["finished"] == 30 + 6
    # Per level, the known changes add up to its stock: adjustments, counts, transfers, and
    # commits (their on_hand change is the hold's units, 3 each, at berlin).
    skus = [f"E-{i}" for i in range(60)]
    for (sku, location), (on_hand, _) in levels_of(client, skus).items():
        rows = table.filter(
            pc.and_(pc.equal(table["sku"], sku), pc.equal(table["location"], location))
        )
        known = pc.sum(rows["delta"]).as_py() or 0
        committed = rows.filter(pc.equal(rows["status"], "committed")).num_rows
        assert known - 3 * committed == on_hand, (sku, location)
        # Its last row (the highest LSN of its shard) is its stock now.
        assert rows["on_hand"][-1].as_py() == on_hand, (sku, location)
    last_ms = int(pc.max(table["at"]).value)
    later = datetime.fromtimestamp((last_ms + 1) / 1000, UTC)
    # The change below must be stamped after `later`: wait out the millisecond.
    while time.time_ns() // 1_000_000 <= last_ms + 1:
        time.sleep(0.001)
    client.adjust("E-0", "berlin", 1, reference="after")
    recent = tmp_path / "recent.parquet"
    run_cli(
        "export-ledger",
        "--out",
        str(recent),
        "--data-dir",
        data_dir,
        "--namespace",
        namespace,
        "--since",
        later.isoformat(),
    )
    assert pq.read_table(recent).column("reference").to_pylist() == ["after"]
    assert not list(tmp_path.glob(".*.partial"))
