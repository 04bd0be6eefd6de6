"""Webhooks against real shards and a real local receiver: every matching event arrives signed
and in per-SKU order, also after the receiver failed for a while; a receiver that never
recovers ends in dead letters."""

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import ray

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import LineRequest
from inventory_actors.feed.webhook_dispatcher import dispatcher
from inventory_actors.feed.webhook_rules import DeliveryPolicy, signature
from tests.conftest import ClientFactory, wait_for

pytestmark = pytest.mark.ray

SECRET = "a-secret-of-sixteen+"
# Enough attempts that a receiver failing 5 times loses nothing, with short pauses.
QUICK = DeliveryPolicy(attempts_max=8, backoff_first_seconds=0.005, backoff_max_seconds=0.05)


class Receiver:
    """A local HTTP endpoint that records what it accepts and fails the first `failures`."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers["X-Inventory-Signature"] != signature(SECRET, body):
                    receiver.bad_signatures += 1
                if receiver.failures != 0:
                    receiver.failures -= 1
                    receiver.refused += 1
                    self.send_response(500)
                else:
                    receiver.accepted.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def shards(make_client: ClientFactory, tmp_path: Path) -> Iterator[tuple[InventoryClient, Any]]:
    namespace = f"hooks-{tmp_path.name}"[:50]
    client = make_client(shard_count=2, data_dir=tmp_path / "data", namespace=namespace)
    hooks = dispatcher(tmp_path / "data", namespace, QUICK)
    yield client, hooks
    ray.kill(hooks, no_restart=True)


def traffic(client: InventoryClient, skus: list[str]) -> int:
    """Adjustments and holds on `skus`; how many stock.adjusted events they make."""
    for round_ in range(5):
        for sku in skus:
            client.adjust(sku, "main", 10 + round_)
        for sku in skus[::2]:
            hold = client.reserve([LineRequest(sku, 1, "main")])
            client.commit(hold.hold_id)
    return 5 * len(skus)


def in_order_per_sku(events: list[dict[str, Any]]) -> bool:
    last: dict[str, int] = {}
    for event in events:
        if event["version"] <= last.get(event["sku"], 0):
            return False
        last[event["sku"]] = event["version"]
    return True


@pytest.mark.parametrize("failures", [0, 5])
def test_every_matching_event_arrives_signed_and_in_per_sku_order(
    shards: tuple[InventoryClient, Any], failures: int
) -> None:
    client, hooks = shards
    receiver = Receiver(failures)
    try:
        subscription = ray.get(hooks.register.remote(receiver.url, ["stock.adjusted"], SECRET))
        skus = [f"W-{i}" for i in range(6)]
        expected = traffic(client, skus)
        wait_for(lambda: len(receiver.accepted) >= expected, 60, "every event delivered")
        assert receiver.refused == failures
        assert receiver.bad_signatures == 0
        assert {event["type"] for event in receiver.accepted} == {"stock.adjusted"}
        assert in_order_per_sku(receiver.accepted)
        seen = {(event["sku"], event["version"]) for event in receiver.accepted}
        assert len(seen) == expected, "every event, once"
        stored = ray.get(hooks.get.remote(subscription.subscription_id))
        wait_for(
            lambda: ray.get(hooks.get.remote(subscription.subscription_id)).delivered >= expected,
            30, "the cursor saved",
        )  # fmt: skip
        assert stored.dead_letters == 0
    finally:
        receiver.close()


def test_a_receiver_that_never_recovers_ends_in_dead_letters_and_delete_stops_it(
    shards: tuple[InventoryClient, Any],
) -> None:
    client, hooks = shards
    receiver = Receiver(failures=-1)  # refuses forever
    try:
        subscription = ray.get(hooks.register.remote(receiver.url, [], SECRET))
        client.adjust("D-1", "main", 5)
        client.adjust("D-2", "main", 5)

        def dead() -> int:
            letters = ray.get(hooks.dead_letters.remote(subscription.subscription_id, 10))
            return len(letters)

        wait_for(lambda: dead() >= 2, 60, "both events in dead letters")
        letters = ray.get(hooks.dead_letters.remote(subscription.subscription_id, 10))
        assert {letter.event["sku"] for letter in letters} == {"D-1", "D-2"}
        assert all(letter.attempts == QUICK.attempts_max for letter in letters)
        assert all(letter.error == "HTTP 500" for letter in letters)
        assert receiver.refused == 2 * QUICK.attempts_max
        assert ray.get(hooks.delete.remote(subscription.subscription_id))
        assert ray.get(hooks.get.remote(subscription.subscription_id)) is None
        refused = receiver.refused
        client.adjust("D-3", "main", 5)
        # Nothing goes out for a deleted subscription: a live one would have tried by now.
        other = Receiver(0)
        probe = ray.get(hooks.register.remote(other.url, [], SECRET))
        client.adjust("D-4", "main", 5)
        wait_for(lambda: any(e["sku"] == "D-4" for e in other.accepted), 30, "the probe")
        assert receiver.refused == refused
        ray.get(hooks.delete.remote(probe.subscription_id))
        other.close()
    finally:
        receiver.close()
