"""Change feed read throughput: events/s from the start to the end of a log of about 1,100,000
events (4 shards), through the Python reader and over HTTP (`GET /v1/events`).

    python -m bench.feed [--restock-rows N] [--adjustments N]
"""

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import httpx
import ray

from bench.common import print_json, print_table, source_state
from bench.restock import write_file
from bench.stack import serve_stack
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import AdjustStock
from inventory_actors.feed.reader import FeedReader
from inventory_actors.restock.job import JobRunner, job_spec
from inventory_actors.shard.feed_pages import Cursor
from inventory_actors.shard.protocol import Submission

PAGE = 10_000
SHARDS = 4


def load(client: InventoryClient, restock_rows: int, adjustments: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        path = Path(tmp) / "load.parquet"
        write_file(path, restock_rows, 1)
        runner = JobRunner(
            job_spec(path, "delta", "parquet", path.name),
            client.partition,
            lambda part: client.shards[part.shard_id].restock.remote(part),
            lambda _: True,
        )
        runner.run(path)
    for start in range(0, adjustments, 1_000):
        batch = [
            Submission(AdjustStock(f"adj-{i % 5_000}", "L0", 1, "received"))
            for i in range(start, min(start + 1_000, adjustments))
        ]
        assert all(outcome.ok for outcome in client.execute(batch))


def read_python(client: InventoryClient) -> tuple[int, float]:
    reader = FeedReader(client.shards, timeout_seconds=60.0)

    async def read() -> int:
        cursor, count = Cursor.start(len(client.shards)), 0
        while True:
            merged = await reader.read(cursor, PAGE)
            if not merged.order:
                return count
            count += len(merged.order)
            cursor = merged.cursor

    started = time.perf_counter()
    count = asyncio.run(read())
    return count, time.perf_counter() - started


def read_http(url: str, key: str) -> tuple[int, float]:
    """Pages over HTTP, read as text: the cursor is taken from the end of the body and events
    counted by their first key, so the figure is the service's, not this client's JSON
    parsing (which would take as long again on the same two cores)."""
    count, cursor = 0, None
    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=120.0) as http:
        while True:
            params = {"limit": str(PAGE), **({"cursor": cursor} if cursor else {})}
            answer = http.get(
                "/v1/events", params=params, headers={"Authorization": f"Bearer {key}"}
            )
            answer.raise_for_status()
            body = answer.text
            events = body.count('{"shard":')
            if not events:
                return count, time.perf_counter() - started
            count += events
            cursor = body[body.rindex('"cursor":"') + 10 : -2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--restock-rows", type=int, default=1_000_000)
    parser.add_argument("--adjustments", type=int, default=100_000)
    args = parser.parse_args()
    with serve_stack(SHARDS, 1, default_proxy=False) as stack:
        client = InventoryClient.connect(stack.data_dir, namespace=stack.namespace)
        load(client, args.restock_rows, args.adjustments)
        # The load leaves snapshots due: take them now, so that reading is measured alone.
        ray.get([shard.snapshot.remote() for shard in client.shards])
        python_count, python_seconds = read_python(client)
        http_count, http_seconds = read_http(stack.url, stack.key)
    expected = args.restock_rows + args.adjustments
    assert python_count == http_count == expected, (python_count, http_count, expected)
    print_table(
        ["reader", "events", "seconds", "events/s"],
        [
            ["Python FeedReader", python_count, python_seconds, python_count / python_seconds],
            ["GET /v1/events", http_count, http_seconds, http_count / http_seconds],
        ],
    )
    print_json(
        "feed",
        {
            "events": expected,
            "python_events_per_second": round(python_count / python_seconds),
            "http_events_per_second": round(http_count / http_seconds),
            "source": source_state(),
        },
    )


if __name__ == "__main__":
    main()
