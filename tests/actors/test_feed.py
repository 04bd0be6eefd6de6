"""The change feed against real shards: read while a load runs and shard processes are killed
with SIGKILL, every acknowledged change appears exactly once, in each shard's LSN order; a
cursor older than the retention is refused."""

import asyncio
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import ray

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import AdjustStock
from inventory_actors.feed.reader import FeedExpired, FeedReader
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.feed_pages import Cursor
from inventory_actors.shard.protocol import ShardStatus, Submission
from tests.conftest import ClientFactory, wait_for

pytestmark = pytest.mark.ray

SKUS = [f"F-{i}" for i in range(40)]


def read_all(
    reader: FeedReader, cursor: Cursor, limit: int = 500
) -> tuple[list[dict[str, Any]], Cursor]:
    """Every event after `cursor` that the shards answer now; shards that are down are waited
    for."""
    found: list[dict[str, Any]] = []
    while True:
        try:
            merged = asyncio.run(reader.read(cursor, limit))
        except Exception:  # a shard restarting: the cursor stays valid, read again
            time.sleep(0.05)
            continue
        found.extend(json.loads(text) for text in merged.texts())
        cursor = merged.cursor
        if not merged.order:
            return found, cursor


Outcomes = dict[str, tuple[Submission, bool]]


def _write_load(client: InventoryClient, stop: threading.Event, outcomes: Outcomes) -> None:
    """+1 adjustments, one key each; records each with whether it was acknowledged."""
    rng = random.Random(7)
    index = 0
    while not stop.is_set():
        batch = []
        for _ in range(20):
            key = f"feed-{index}"
            index += 1
            command = AdjustStock(rng.choice(SKUS), "main", 1, "received", reference=key)
            batch.append(Submission(command, key))
        for submission, outcome in zip(batch, client.execute(batch), strict=True):
            assert submission.idempotency_key is not None
            outcomes[submission.idempotency_key] = (submission, outcome.ok)


def more_writes(outcomes: Outcomes, count: int = 200) -> None:
    """Wait until the load has answered `count` more writes."""
    target = len(outcomes) + count
    wait_for(lambda: len(outcomes) >= target, 60, f"{count} more writes")


def test_a_reader_sees_every_acknowledged_change_once_in_lsn_order_across_shard_kills(
    make_client: ClientFactory,
) -> None:
    client = make_client(shard_count=3, call_timeout_seconds=5.0)
    reader = FeedReader(client.shards, timeout_seconds=5.0)
    cursor = Cursor.start(3)
    outcomes: Outcomes = {}
    stop = threading.Event()
    writer = threading.Thread(target=_write_load, args=(client, stop, outcomes))
    writer.start()
    seen: list[dict[str, Any]] = []
    try:
        for victim in (0, 2):
            more_writes(outcomes)
            page, cursor = read_all(reader, cursor)
            seen.extend(page)
            status = client.status()[victim]
            assert isinstance(status, ShardStatus)
            os.kill(status.pid, signal.SIGKILL)
        more_writes(outcomes)
    finally:
        stop.set()
        writer.join(60)
    # Unknown outcomes are resolved by retrying with their keys: each applies at most once.
    unknown = [submission for submission, ok in outcomes.values() if not ok]
    for retry in range(100):
        answers = client.execute(unknown)
        unknown = [s for s, outcome in zip(unknown, answers, strict=True) if not outcome.ok]
        if not unknown:
            break
        time.sleep(0.1 * retry)  # a shard still restarting: back off and ask again
    assert not unknown
    page, cursor = read_all(reader, cursor)
    seen.extend(page)
    ours = [event for event in seen if str(event.get("reference", "")).startswith("feed-")]
    references = Counter(event["reference"] for event in ours)
    assert max(references.values()) == 1, "a change appeared twice"
    acknowledged = {key for key, (_, ok) in outcomes.items() if ok}
    assert acknowledged <= set(references), "an acknowledged change is missing"
    # Each shard's events come in LSN order, and the stock is the sum of the changes seen.
    last: dict[int, int] = {}
    for event in seen:
        assert event["lsn"] >= last.get(event["shard"], 0)
        last[event["shard"]] = event["lsn"]
    assert set(references) == set(outcomes), "every key, resolved, appears once"
    totals = Counter(event["sku"] for event in ours)
    for sku, view in zip(SKUS, client.get_skus(SKUS), strict=True):
        assert (0 if view is None else view.on_hand) == totals[sku], sku


def test_a_cursor_older_than_the_retention_is_refused_and_a_new_reader_starts_at_the_oldest(
    make_client: ClientFactory, tmp_path: Path
) -> None:
    config = ShardConfig(event_retention_seconds=0.0, housekeeping_interval_seconds=0.1)
    client = make_client(shard_count=1, config=config)
    reader = FeedReader(client.shards, timeout_seconds=10.0)
    for index in range(5):
        client.adjust("R-1", "main", 1, reference=f"old-{index}")
    early = asyncio.run(reader.read(Cursor.start(1), 2)).cursor
    assert ray.get(client.shards[0].snapshot.remote())
    client.adjust("R-1", "main", 1, reference="new")

    def pruned() -> bool:
        first, _ = ray.get(client.shards[0].read_feed.remote(0, 1))
        return bool(first > 5)

    wait_for(pruned, 30, "the log to be pruned up to the snapshot")
    with pytest.raises(FeedExpired):
        asyncio.run(reader.read(early, 10))
    events, _ = read_all(reader, Cursor.start(1))
    assert [event["reference"] for event in events] == ["new"]
