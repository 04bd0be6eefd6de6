"""What metrics and request ids cost per request and per batch, measured in process: the API
middleware against the bare app, and one Ray metric call of each kind (docs/performance.md).

    python -m bench.observability [--requests 200000]
"""

import argparse
import asyncio
import time
from typing import Any

from bench.common import print_json, print_table, start_ray
from inventory_actors.observability import metric_names as names
from inventory_actors.observability.ray_metrics import make_metric
from serve_app.middleware.request_scope import HttpMetrics, Observability

SCOPE_HEADERS = [(b"host", b"localhost"), (b"x-request-id", b"bench-1")]


async def _bare_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _drive(app: Any, requests: int) -> float:
    """Seconds per request through `app` (an ASGI callable), answered in memory."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    started = time.perf_counter()
    for _ in range(requests):
        scope = {"type": "http", "method": "GET", "path": "/x", "headers": SCOPE_HEADERS}
        await app(scope, receive, send)
    return (time.perf_counter() - started) / requests


def _per_call_us(call: Any, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    args = parser.parse_args()
    start_ray("bench-observability")
    metrics = HttpMetrics(make_metric)
    assert metrics.create()  # as in a replica: Ray metrics, exported every second
    observed = Observability(_bare_app, metrics)
    bare_s = asyncio.run(_drive(_bare_app, args.requests))
    observed_s = asyncio.run(_drive(observed, args.requests))
    histogram = make_metric(names.SHARD_COMMIT_SECONDS)
    counter = make_metric(names.SHARD_COMMANDS)
    gauge = make_metric(names.SHARD_QUEUE_DEPTH)
    calls = args.requests // 4
    tags = {"shard": "0", "command": "reserve_stock", "outcome": "ok"}
    rows = [
        ("request, bare ASGI app", f"{bare_s * 1e6:.2f}"),
        ("request, with Observability", f"{observed_s * 1e6:.2f}"),
        ("middleware cost per request", f"{(observed_s - bare_s) * 1e6:.2f}"),
        (
            "Histogram.observe",
            f"{_per_call_us(lambda: histogram.observe(0.001, tags={'shard': '0'}), calls):.2f}",
        ),
        ("Counter.inc", f"{_per_call_us(lambda: counter.inc(1, tags=tags), calls):.2f}"),
        ("Gauge.set", f"{_per_call_us(lambda: gauge.set(1, tags={'shard': '0'}), calls):.2f}"),
    ]
    print_table(["what", "microseconds"], rows)
    print_json("observability", {"microseconds": dict(rows)})


if __name__ == "__main__":
    main()
