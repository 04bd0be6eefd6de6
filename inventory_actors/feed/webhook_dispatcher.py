"""The webhook dispatcher: a detached actor that reads the change feed for each subscription and
POSTs each matching event, at least once, in per-SKU order, signed. Off the write path: it only
reads the shards' logs. A subscription's cursor is saved once every event of its page was
delivered or dead-lettered, so a restart sends a page again, never skips one (docs/webhooks.md)."""

import asyncio
import json
import logging
import random
import secrets
import time
from pathlib import Path
from typing import Any

import aiohttp
import ray

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.feed.reader import FeedExpired, FeedReader
from inventory_actors.feed.webhook_rules import (
    SIGNATURE_HEADER,
    DeliveryPolicy,
    lanes,
    signature,
    wanted,
)
from inventory_actors.observability import json_logging
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.feed_pages import Cursor, FeedItem, Position
from inventory_actors.shard.protocol import ShardStatus
from persistence.webhooks_store import WEBHOOKS_FILE, DeadLetter, Subscription, WebhooksStore

log = logging.getLogger(__name__)

DISPATCHER_NAME = "inventory-webhooks"
PAGE_EVENTS = 200
# An idle subscription looks for new events this often: the delivery lag when nothing waits.
POLL_SECONDS = 0.05
READ_TIMEOUT_SECONDS = 10.0


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@ray.remote(
    # Waiting on the network, mostly: no CPU reserved.
    num_cpus=0,
    # Restarted if it dies; subscriptions and cursors are on disk. Its calls are safe to retry.
    max_restarts=-1,
    max_task_retries=3,
)
class WebhookDispatcher:
    def __init__(self, data_dir: str, namespace: str, policy: DeliveryPolicy | None = None) -> None:
        json_logging.configure("webhooks")
        self._store = WebhooksStore(Path(data_dir) / WEBHOOKS_FILE)
        self._client = InventoryClient.connect(data_dir, namespace=namespace)
        self._reader = FeedReader(self._client.shards, READ_TIMEOUT_SECONDS)
        self._policy = policy or DeliveryPolicy()
        # aiohttp, not httpx: about six times the requests per second of CPU here, and Ray
        # Serve installs it already.
        self._http: aiohttp.ClientSession | None = None
        self._rng = random.Random()
        self._loops: dict[str, asyncio.Task[None]] = {}
        for subscription in self._store.all():
            self._start(subscription.subscription_id)

    def _start(self, subscription_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(subscription_id))
        self._loops[subscription_id] = task

    async def register(self, url: str, events: list[str], secret: str) -> Subscription:
        """A new subscription, delivering events committed from now on."""
        subscription = await self._new(url, events, secret)
        self._store.add(subscription)
        self._start(subscription.subscription_id)
        return subscription

    async def register_once(
        self, url: str, events: list[str], secret: str, key: str, fingerprint: str
    ) -> tuple[Subscription, bool] | None:
        """`register` under an Idempotency-Key, kept on disk: (the subscription, whether it is
        the first answer replayed), or None when the key came first with another request."""
        subscription = await self._new(url, events, secret)
        # One synchronous step, so two calls with one key cannot both add (no await inside).
        outcome = self._store.add_once(subscription, key, fingerprint)
        if outcome is not None and not outcome[1]:
            self._start(subscription.subscription_id)
        return outcome

    async def _new(self, url: str, events: list[str], secret: str) -> Subscription:
        cursor = await self._feed_end()
        return Subscription(
            "wh_" + secrets.token_hex(8), url, tuple(events), secret, _now_ms(),
            cursor.encode(), 0, 0,
        )  # fmt: skip

    async def _feed_end(self) -> Cursor:
        statuses = await self._client.status_async(READ_TIMEOUT_SECONDS)
        positions = []
        for status in statuses:
            if not isinstance(status, ShardStatus):
                raise status  # a shard that is down cannot say where its log ends
            positions.append(Position(status.last_lsn + 1, 0))
        return Cursor(tuple(positions))

    async def subscriptions(self) -> list[Subscription]:
        return self._store.all()

    async def get(self, subscription_id: str) -> Subscription | None:
        return self._store.get(subscription_id)

    async def delete(self, subscription_id: str) -> bool:
        task = self._loops.pop(subscription_id, None)
        if task is not None:
            task.cancel()
        return self._store.remove(subscription_id)

    async def dead_letters(self, subscription_id: str, limit: int) -> list[DeadLetter]:
        return self._store.dead_letters(subscription_id, limit)

    # -- delivering ----------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        """One pooled session, made on the actor's loop when first needed."""
        if self._http is None:
            timeout = aiohttp.ClientTimeout(total=self._policy.request_timeout_seconds)
            connector = aiohttp.TCPConnector(limit=64, limit_per_host=self._policy.lanes)
            self._http = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self._http

    async def _run(self, subscription_id: str) -> None:
        while True:
            subscription = self._store.get(subscription_id)
            if subscription is None:
                return
            try:
                moved = await self._page(subscription)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("webhook %s: page failed; retrying", subscription_id)
                moved = False
                await asyncio.sleep(1.0)
            if not moved:
                await asyncio.sleep(POLL_SECONDS)

    async def _page(self, subscription: Subscription) -> bool:
        """Deliver the next page of events; whether the cursor moved."""
        shard_count = len(self._client.shards)
        cursor = (
            Cursor.decode(subscription.cursor, shard_count)
            if subscription.cursor
            else (Cursor.start(shard_count))
        )
        try:
            merged = await self._reader.read(cursor, PAGE_EVENTS)
        except ShardUnavailable:
            return False
        except FeedExpired as expired:
            self._skip_expired(subscription, cursor, expired)
            return True
        matching = [item for item, _, _ in merged.items() if wanted(item, subscription.events)]
        results = await asyncio.gather(
            *(self._lane(subscription, lane) for lane in lanes(matching, self._policy.lanes))
        )
        dead = [letter for lane_dead in results for letter in lane_dead]
        if merged.cursor != cursor:
            self._store.advance(
                subscription.subscription_id,
                merged.cursor.encode(),
                len(matching) - len(dead),
                dead,
            )
            return True
        return False

    def _skip_expired(
        self, subscription: Subscription, cursor: Cursor, expired: FeedExpired
    ) -> None:
        """The subscription fell behind one shard's retention: what is gone cannot be delivered.
        Only that shard's position moves, to its oldest record kept (the others keep theirs, so
        nothing they hold is sent again), and the gap becomes a dead letter, in one write."""
        shard_id, first_lsn = expired.shard_id, expired.first_lsn
        lost = cursor.positions[shard_id]
        gap = DeadLetter(
            subscription.subscription_id,
            {"type": "gap", "shard": shard_id, "from_lsn": lost.lsn, "to_lsn": first_lsn - 1},
            0,
            f"shard {shard_id}'s records {lost.lsn} to {first_lsn - 1} were pruned (older than "
            "the event retention) before they were delivered",
            _now_ms(),
        )
        log.error("webhook %s: %s", subscription.subscription_id, gap.error)
        moved = cursor.with_position(shard_id, Position(first_lsn, 0))
        self._store.advance(subscription.subscription_id, moved.encode(), 0, [gap])

    async def _lane(self, subscription: Subscription, events: list[FeedItem]) -> list[DeadLetter]:
        """One SKU lane, in order: each event delivered or given up before the next."""
        dead = []
        for event in events:
            letter = await self._deliver(subscription, event)
            if letter is not None:
                dead.append(letter)
        return dead

    async def _deliver(self, subscription: Subscription, event: FeedItem) -> DeadLetter | None:
        body = event.text.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(subscription.secret, body),
            "X-Inventory-Subscription": subscription.subscription_id,
        }
        error = ""
        for attempt in range(1, self._policy.attempts_max + 1):
            try:
                async with self._session().post(
                    subscription.url, data=body, headers=headers
                ) as answer:
                    await answer.read()
                    if 200 <= answer.status < 300:
                        return None
                    error = f"HTTP {answer.status}"
            except (aiohttp.ClientError, TimeoutError) as failure:
                error = f"{type(failure).__name__}: {failure}"
            if attempt < self._policy.attempts_max:
                await asyncio.sleep(self._policy.backoff_seconds(attempt, self._rng))
        return DeadLetter(
            subscription.subscription_id,
            json.loads(event.text),
            self._policy.attempts_max,
            error,
            _now_ms(),
        )


def dispatcher(data_dir: str | Path, namespace: str, policy: DeliveryPolicy | None = None) -> Any:
    """The webhook dispatcher of `data_dir`, created on first use."""
    return WebhookDispatcher.options(  # type: ignore[attr-defined]
        name=DISPATCHER_NAME, namespace=namespace, lifetime="detached", get_if_exists=True
    ).remote(str(Path(data_dir).resolve()), namespace, policy)
