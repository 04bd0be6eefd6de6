"""Webhooks against real shards and a real local receiver: every matching event arrives signed
and in per-SKU order, also after the receiver failed for a while or the dispatcher restarted; a
receiver that never recovers ends in dead letters; a shard that expired leaves a gap letter."""

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import ray

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import AdjustStock, LineRequest
from inventory_actors.feed.webhook_dispatcher import dispatcher
from inventory_actors.feed.webhook_rules import DeliveryPolicy, signature
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.protocol import ShardStatus, Submission
from tests.conftest import ClientFactory, wait_for

pytestmark = pytest.mark.ray

SECRET = "a-secret-of-sixteen+"
# Enough attempts that a receiver failing 5 times loses nothing, with short pauses.
QUICK = DeliveryPolicy(attempts_max=8, backoff_first_seconds=0.005, backoff_max_seconds=0.05)


class Receiver:
    """A local HTTP endpoint that records what it accepts and fails the first `failures`. An
    event whose reference is `held` is not answered until `release` is set (then refused), or
    until its sender goes away (`dropped` counts those)."""

    def __init__(self, failures: int, held: str | None = None) -> None:
        self.failures = failures
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        self.bad_signatures = 0
        self.held, self.holding, self.dropped, self.release = held, 0, 0, threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers["X-Inventory-Signature"] != signature(SECRET, body):
                    receiver.bad_signatures += 1
                held = receiver.held is not None and not receiver.release.is_set()
                if held and json.loads(body)["reference"] == receiver.held:
                    receiver.holding += 1
                    if not self.hold():
                        receiver.dropped += 1
                        return
                    self.send_response(503)
                elif receiver.failures != 0:
                    receiver.failures -= 1
                    receiver.refused += 1
                    self.send_response(500)
                else:
                    receiver.accepted.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def hold(self) -> bool:
                """Until released (True) or the sender closed its connection (False)."""
                deadline = time.monotonic() + 60
                while not receiver.release.wait(0.05) and time.monotonic() < deadline:
                    readable, _, _ = select.select([self.connection], [], [], 0)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        return False
                return True

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


class Hooks:
    """Shards and their webhook dispatcher, which a test may stop and start again (a new
    process, with only what is on disk)."""

    def __init__(self, client: InventoryClient, data_dir: Path, namespace: str) -> None:
        self.client, self.data_dir, self.namespace = client, data_dir, namespace
        self.handle: Any = None
        self.start()

    def start(self) -> Any:
        def started() -> Any:
            handle = dispatcher(self.data_dir, self.namespace, QUICK)
            ray.get(handle.subscriptions.remote(), timeout=30)  # a stopped one's name may linger
            return handle

        self.handle = wait_for(started, 60, "the dispatcher to start")
        return self.handle

    def stop(self) -> None:
        ray.kill(self.handle, no_restart=True)


@pytest.fixture
def make_hooks(make_client: ClientFactory, tmp_path: Path) -> Iterator[Callable[..., Hooks]]:
    made: list[Hooks] = []

    def make(config: ShardConfig | None = None) -> Hooks:
        namespace = f"hooks-{tmp_path.name}"[:50]
        data_dir = tmp_path / "data"
        client = make_client(shard_count=2, data_dir=data_dir, namespace=namespace, config=config)
        made.append(Hooks(client, data_dir, namespace))
        return made[-1]

    yield make
    for hooks in made:
        hooks.stop()


@pytest.fixture
def shards(make_hooks: Callable[..., Hooks]) -> tuple[InventoryClient, Any]:
    hooks = make_hooks()
    return hooks.client, hooks.handle


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


def sku_on(client: InventoryClient, shard_id: int, prefix: str) -> str:
    return next(
        sku
        for sku in (f"{prefix}-{i}" for i in range(10_000))
        if client.partition.owner(sku=sku) == shard_id
    )


def test_a_shard_that_expired_moves_alone_and_leaves_a_gap_in_the_dead_letters(
    make_hooks: Callable[..., Hooks],
) -> None:
    """The dispatcher is down while shard 0 writes and prunes records: after it starts again,
    shard 0's position moves to its oldest record kept and the gap is a dead letter; shard 1
    (which pruned nothing) sends nothing again and loses nothing."""
    retain_nothing = ShardConfig(event_retention_seconds=0.0, housekeeping_interval_seconds=0.1)
    hooks = make_hooks(retain_nothing)
    client = hooks.client
    expiring, kept = sku_on(client, 0, "X"), sku_on(client, 1, "K")
    receiver = Receiver(0)
    try:
        subscription = ray.get(hooks.handle.register.remote(receiver.url, [], SECRET))
        hook_id = subscription.subscription_id
        for index in range(3):
            client.adjust(expiring, "main", 1, reference=f"early-{index}")
            client.adjust(kept, "main", 1, reference=f"early-{index}")
        wait_for(
            lambda: ray.get(hooks.handle.get.remote(hook_id)).delivered == 6, 60, "early events"
        )
        hooks.stop()
        status = client.status()[0]
        assert isinstance(status, ShardStatus)
        lost_from = status.last_lsn + 1
        for index in range(3):
            client.adjust(expiring, "main", 1, reference=f"lost-{index}")
            client.adjust(kept, "main", 1, reference=f"late-{index}")
        assert ray.get(client.shards[0].snapshot.remote())
        lost_to = lost_from + 2

        def pruned() -> bool:
            first, _ = ray.get(client.shards[0].read_feed.remote(0, 1))
            return bool(first == lost_to + 1)

        wait_for(pruned, 30, "shard 0's log pruned whole")
        hooks.start()
        client.adjust(expiring, "main", 1, reference="after")

        def arrived() -> list[str]:
            return sorted(f"{e['sku']}:{e['reference']}" for e in receiver.accepted)

        expected = sorted(
            [f"{sku}:early-{i}" for sku in (expiring, kept) for i in range(3)]
            + [f"{kept}:late-{i}" for i in range(3)]
            + [f"{expiring}:after"]
        )
        wait_for(lambda: arrived() == expected, 60, "the late and new events, each once")
        letters = ray.get(hooks.handle.dead_letters.remote(hook_id, 10))
        assert [(d.event, d.attempts) for d in letters] == [
            ({"type": "gap", "shard": 0, "from_lsn": lost_from, "to_lsn": lost_to}, 0)
        ]
        assert "pruned" in letters[0].error

        def counted() -> bool:
            stored = ray.get(hooks.handle.get.remote(hook_id))
            return bool((stored.delivered, stored.dead_letters) == (10, 1))

        wait_for(counted, 30, "10 delivered and 1 dead letter counted")
        assert arrived() == expected, "nothing was sent again"
    finally:
        receiver.close()


def test_a_page_cut_short_by_a_dispatcher_restart_is_sent_again_in_order(
    make_hooks: Callable[..., Hooks],
) -> None:
    """The dispatcher dies while the second event of a page is on its way (the receiver holds
    it): Ray starts it again, and it sends the page again from its saved cursor, so the first
    event arrives twice (at least once) and nothing is lost, in order; events committed
    meanwhile follow."""
    hooks = make_hooks()
    client = hooks.client
    receiver = Receiver(0, held="e2")
    try:
        subscription = ray.get(hooks.handle.register.remote(receiver.url, [], SECRET))
        # One call, one log batch: the three events are read as one page.
        page = [Submission(AdjustStock("R-1", "main", 1, "received", f"e{i}")) for i in (1, 2, 3)]
        assert all(outcome.ok for outcome in client.execute(page))
        wait_for(lambda: receiver.holding and len(receiver.accepted) == 1, 30, "e2 on its way")
        ray.kill(hooks.handle, no_restart=False)  # Ray restarts it: max_restarts=-1
        wait_for(lambda: receiver.dropped, 30, "the dispatcher's process gone")
        receiver.release.set()
        client.adjust("R-1", "main", 1, reference="e4")

        def references() -> list[str]:
            return [event["reference"] for event in receiver.accepted]

        wait_for(lambda: len(references()) >= 5, 60, "the page again, and e4")
        assert references() == ["e1", "e1", "e2", "e3", "e4"]

        def saved() -> bool:
            stored = ray.get(hooks.handle.get.remote(subscription.subscription_id))
            return bool(stored.delivered == 4 and stored.dead_letters == 0)

        wait_for(saved, 30, "the cursor saved past e4")
        assert references() == ["e1", "e1", "e2", "e3", "e4"]
    finally:
        receiver.close()
