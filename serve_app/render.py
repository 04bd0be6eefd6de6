"""JSON bodies of the API's answers, built from the engine's read models."""

import functools
import time
from typing import Any

from inventory_actors.domain import HoldView, SkuView


@functools.lru_cache(maxsize=4_096)
def rfc3339(epoch_ms: int) -> str:
    """UTC, millisecond precision, `Z` suffix: what the contract's timestamps look like.
    Cached: the holds of one shard call share their creation time, and often their expiry."""
    seconds, millis = divmod(epoch_ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds)) + f"{millis:03d}Z"


def sku_body(view: SkuView) -> dict[str, Any]:
    on_hand = reserved = 0
    locations = []
    for level in view.locations:
        on_hand += level.on_hand
        reserved += level.reserved
        locations.append(
            {
                "location": level.location,
                "on_hand": level.on_hand,
                "reserved": level.reserved,
                "available": level.on_hand - level.reserved,
            }
        )
    return {
        "sku": view.sku,
        "version": view.version,
        "totals": {"on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved},
        "locations": locations,
    }


def reservation_body(view: HoldView) -> dict[str, Any]:
    return {
        "reservation_id": view.hold_id,
        "status": str(view.status),
        "expires_at": rfc3339(view.expires_at_ms),
        "reference": view.reference,
        "created_at": rfc3339(view.created_at_ms),
        "lines": [
            {"sku": line.sku, "location": line.location, "quantity": line.quantity}
            for line in view.lines
        ],
    }


def etag(version: int) -> str:
    return f'"{version}"'
