"""The change feed against real shards: read while a load runs and shard processes are killed
with SIGKILL, every acknowledged change appears exactly once, in each shard's LSN order; a
cursor older than the retention (one from the very start too) is refused, never a silent gap."""

import asyncio
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest
import ray

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import AdjustStock
from inventory_actors.feed.reader import FeedExpired, FeedReader
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.feed_pages import Cursor, Position
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


def sku_on(client: InventoryClient, shard_id: int, prefix: str) -> str:
    """A SKU that `shard_id` owns."""
    return next(
        sku
        for sku in (f"{prefix}-{i}" for i in range(10_000))
        if client.partition.owner(sku=sku) == shard_id
    )


def first_lsn(client: InventoryClient, shard_id: int) -> int:
    first, _ = ray.get(client.shards[shard_id].read_feed.remote(0, 1))
    return int(first)


def references(events: list[dict[str, Any]]) -> list[str]:
    return [str(event["reference"]) for event in events]


RETAIN_NOTHING = ShardConfig(event_retention_seconds=0.0, housekeeping_interval_seconds=0.1)


def test_a_cursor_older_than_the_retention_is_refused_and_a_new_reader_starts_at_the_oldest(
    make_client: ClientFactory,
) -> None:
    client = make_client(shard_count=1, config=RETAIN_NOTHING)
    reader = FeedReader(client.shards, timeout_seconds=10.0)
    for index in range(5):
        client.adjust("R-1", "main", 1, reference=f"old-{index}")
    early = asyncio.run(reader.read(Cursor.start(1), 2)).cursor
    assert ray.get(client.shards[0].snapshot.remote())
    client.adjust("R-1", "main", 1, reference="new")
    wait_for(lambda: first_lsn(client, 0) > 5, 30, "the log to be pruned up to the snapshot")
    with pytest.raises(FeedExpired):
        asyncio.run(reader.read(early, 10))
    # A cursor from the very start, as a client holds it, names LSN 1: pruned, so refused too.
    with pytest.raises(FeedExpired):
        asyncio.run(reader.read(Cursor.decode(Cursor((Position(0, 0),)).encode(), 1), 10))
    # Only a reader without a cursor starts at the oldest event kept.
    events, _ = read_all(reader, Cursor.start(1))
    assert references(events) == ["new"]


def test_a_cursor_that_read_nothing_of_a_shard_is_refused_once_that_shard_pruned_records(
    make_client: ClientFactory,
) -> None:
    """Two shards, a consumer paused while the shard it had read nothing of (it was empty)
    writes records and prunes them: the consumer gets FeedExpired, never a silent gap."""
    client = make_client(shard_count=2, config=RETAIN_NOTHING)
    reader = FeedReader(client.shards, timeout_seconds=10.0)
    busy, quiet = sku_on(client, 0, "B"), sku_on(client, 1, "Q")
    client.adjust(busy, "main", 1, reference="seen")
    events, paused = read_all(reader, Cursor.start(2))
    assert references(events) == ["seen"]
    # A client that got its cursor from an older version holds position 0 for the empty shard.
    held = [paused, Cursor.decode(paused.encode(), 2)]
    held.append(Cursor.decode(Cursor((paused.positions[0], Position(0, 0))).encode(), 2))
    for index in range(3):
        client.adjust(quiet, "main", 1, reference=f"missed-{index}")
    assert ray.get(client.shards[1].snapshot.remote())
    # The whole log of shard 1 goes (it is all before the snapshot's start).
    wait_for(lambda: first_lsn(client, 1) == 4, 30, "shard 1's log pruned whole")
    for cursor in held:
        with pytest.raises(FeedExpired) as expired:
            asyncio.run(reader.read(cursor, 10))
        assert (expired.value.shard_id, expired.value.first_lsn) == (1, 4)
    # Without a cursor: from the oldest kept; and that reader, paused in turn, misses nothing.
    events, fresh = read_all(reader, Cursor.start(2))
    assert references(events) == ["seen"]
    fresh = Cursor.decode(fresh.encode(), 2)
    client.adjust(quiet, "main", 1, reference="after")
    client.adjust(busy, "main", 1, reference="after-busy")
    events, _ = read_all(reader, fresh)
    assert sorted(references(events)) == ["after", "after-busy"]


def test_a_cursor_over_several_shards_one_of_them_empty_misses_and_repeats_nothing(
    make_client: ClientFactory,
) -> None:
    client = make_client(shard_count=3)
    reader = FeedReader(client.shards, timeout_seconds=10.0)
    empty = sku_on(client, 1, "E")
    others = [sku_on(client, 0, "A"), sku_on(client, 2, "C")]
    for index in range(6):
        client.adjust(others[index % 2], "main", 1, reference=f"first-{index}")
    # A brand-new shard (its log starts at 1) with a held position 0 is not refused.
    for start in (Cursor.start(3), Cursor.decode(Cursor.start(3).encode(), 3)):
        events, cursor = read_all(reader, start, limit=4)
        assert sorted(references(events)) == [f"first-{index}" for index in range(6)]
    token = cursor.encode()
    for index in range(4):
        client.adjust(empty, "main", 1, reference=f"second-{index}")
        client.adjust(others[index % 2], "main", 1, reference=f"second-other-{index}")
    events, cursor = read_all(reader, Cursor.decode(token, 3), limit=3)
    assert sorted(references(events)) == sorted(
        [f"second-{i}" for i in range(4)] + [f"second-other-{i}" for i in range(4)]
    )
    assert [e["reference"] for e in events if e["sku"] == empty] == [
        f"second-{i}" for i in range(4)
    ]
    again, _ = read_all(reader, cursor)
    assert again == []
