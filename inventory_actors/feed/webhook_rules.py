"""Webhook delivery rules, without Ray or HTTP: which events a subscription wants, how a body is
signed, how deliveries split into lanes that keep each SKU's order, and when to retry."""

import hashlib
import hmac
import random
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from inventory_actors.shard.feed_pages import FeedItem

EVENT_TYPES = frozenset(
    {
        "stock.adjusted",
        "stock.set",
        "stock.transferred",
        "reservation.created",
        "reservation.committed",
        "reservation.released",
        "reservation.expired",
        "stock.low",
        "stock.recovered",
    }
)
SIGNATURE_HEADER = "X-Inventory-Signature"


@dataclass(frozen=True)
class DeliveryPolicy:
    """How hard a delivery is tried: exponential backoff with full jitter, then dead letter."""

    attempts_max: int = 8
    backoff_first_seconds: float = 0.1
    backoff_max_seconds: float = 10.0
    request_timeout_seconds: float = 5.0
    # Events of different SKUs go out in parallel over this many lanes; one SKU, one lane.
    lanes: int = 32

    def backoff_seconds(self, attempt: int, rng: random.Random) -> float:
        """The pause after failed attempt `attempt` (1-based): uniform in [0, cap], the cap
        doubling each attempt (full jitter: retries of many events do not move in step)."""
        cap = min(self.backoff_max_seconds, self.backoff_first_seconds * 2 ** (attempt - 1))
        return rng.uniform(0, cap)


def wanted(event: FeedItem, types: Sequence[str]) -> bool:
    return not types or event.type in types


def signature(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>`: what X-Inventory-Signature carries."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def lanes(events: Sequence[FeedItem], count: int) -> list[list[FeedItem]]:
    """`events` split into `count` lanes by SKU, each in the given order: a SKU's events stay
    in one lane, so they are delivered one after another, in order."""
    split: list[list[FeedItem]] = [[] for _ in range(count)]
    for event in events:
        split[zlib.crc32(str(event.sku).encode()) % count].append(event)
    return [lane for lane in split if lane]
