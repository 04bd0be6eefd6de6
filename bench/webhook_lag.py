"""Lag from commit to webhook delivery while about 1,000 reservations/s run (2,000 SKUs, 4
shards): when a local receiver got each event, less the event's commit time (`at`).

    python -m bench.webhook_lag [--rate N] [--seconds N]
"""

import argparse
import json
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.common import adjustment, print_json, print_table, reservation, source_state, start_ray
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.feed.webhook_dispatcher import dispatcher
from inventory_actors.shard.protocol import Submission

SKUS = 2_000
NAMESPACE = "bench-webhooks"


class Receiver:
    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        lags = self.lags_ms

        class Handler(BaseHTTPRequestHandler):
            # Keep-alive, as a real receiver would: one connection per dispatcher lane.
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                arrived_ms = time.time() * 1000
                event = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                at_ms = datetime.fromisoformat(event["at"].replace("Z", "+00:00")).timestamp()
                lags.append(arrived_ms - at_ms * 1000)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def drive(client: InventoryClient, rate: int, seconds: float) -> int:
    """Single-line holds at `rate`/s for `seconds`, in batches every 0.1 s; how many held."""
    per_tick, held, tick = max(1, rate // 10), 0, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        batch = [
            Submission(reservation(f"sku-{(tick * per_tick + i) % SKUS}")) for i in range(per_tick)
        ]
        held += sum(outcome.ok for outcome in client.execute(batch))
        tick += 1
        pause = started + tick * 0.1 - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    start_ray(NAMESPACE)
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        data_dir = Path(tmp) / "data"
        client = InventoryClient.connect(data_dir, shard_count=4, namespace=NAMESPACE)
        stock = [Submission(adjustment(f"sku-{i}", "L0", 1_000_000)) for i in range(SKUS)]
        assert all(outcome.ok for outcome in client.execute(stock))
        receiver = Receiver()
        hooks = dispatcher(data_dir, NAMESPACE)
        import ray  # noqa: PLC0415 - started above by start_ray

        ray.get(hooks.register.remote(receiver.url, ["reservation.created"], "s" * 32))
        started = time.perf_counter()
        held = drive(client, args.rate, args.seconds)
        rate = held / (time.perf_counter() - started)
        deadline = time.monotonic() + 120
        while len(receiver.lags_ms) < held and time.monotonic() < deadline:
            time.sleep(0.1)
        delivered = len(receiver.lags_ms)
        client.shutdown()
    lags = receiver.lags_ms
    figures = {
        "reservations_per_second": round(rate),
        "delivered": delivered,
        "held": held,
        "lag_p50_ms": round(percentile(lags, 0.5), 1),
        "lag_p99_ms": round(percentile(lags, 0.99), 1),
        "lag_max_ms": round(max(lags), 1),
        "source": source_state(),
    }
    print_table(
        ["reservations/s", "delivered", "lag p50 ms", "lag p99 ms", "lag max ms"],
        [[rate, delivered, figures["lag_p50_ms"], figures["lag_p99_ms"], figures["lag_max_ms"]]],
    )
    print_json("webhook_lag", figures)


if __name__ == "__main__":
    main()
