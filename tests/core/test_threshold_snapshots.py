"""Thresholds and the low set through a shard's snapshot and recovery (no Ray)."""

import asyncio

from inventory_actors.domain import AdjustStock, SetStock, SetThreshold, StockRecovered
from inventory_actors.domain.snapshot_io import THRESHOLDS
from inventory_actors.shard.codec import decode_events
from inventory_actors.shard.config import ShardConfig
from persistence import MemoryShardStore
from tests.core.test_shard_core import Clock, make_core, ok, run


def test_thresholds_and_alerts_survive_a_snapshot_taken_while_levels_cross() -> None:
    async def body() -> None:
        store = MemoryShardStore()
        clock = Clock()
        core = make_core(store, clock, ShardConfig(snapshot_chunk_rows=1))
        for sku in "ABCD":
            await ok(core, SetStock(sku, "berlin", 10))
            await ok(core, SetThreshold(sku, "berlin", 8))
        taking = core.snapshots.start(clock())
        # Levels cross both ways while the snapshot copies its chunks, one row at a time.
        crossing = asyncio.gather(
            *(core.run_command(AdjustStock(sku, "berlin", -3, "damaged")) for sku in "ABC"),
            core.run_command(SetThreshold("D", "berlin", None)),
            core.run_command(SetThreshold("E", "paris", 1)),
        )
        assert await taking
        await crossing
        await ok(core, AdjustStock("A", "berlin", 2, "received"))
        info = store.latest_snapshot()
        assert info is not None
        kinds = [kind for kind, _ in store.read_snapshot_chunks(info.snapshot_id)]
        assert THRESHOLDS in kinds
        live, alerts = core.ledger.fingerprint(), core.read_alerts()
        assert alerts == [("B", "berlin", 7, 8), ("C", "berlin", 7, 8), ("E", "paris", 0, 1)]
        await core.stop()

        again = make_core(store, clock)
        assert again.ledger.fingerprint() == live
        assert again.read_alerts() == alerts
        # Replay applied the logged crossings and detected none of its own: the next crossing
        # of B is a recovery, once.
        outcome = await ok(again, AdjustStock("B", "berlin", 5, "received"))
        assert outcome.lsn is not None
        ((_, _, text),) = store.read_log_events(outcome.lsn - 1, 1)
        assert decode_events(text)[1:] == [StockRecovered("B", "berlin", 12, 8)]
        assert again.read_alerts() == [("C", "berlin", 7, 8), ("E", "paris", 0, 1)]
        await again.stop()

    run(body)
