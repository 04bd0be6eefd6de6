"""A SKU as it stood at a past time, from its current state and its events in the log.

Levels are never deleted, so each level the SKU has now is taken as it was after its newest
event at or before that time, else before its oldest event after it, else as it is now
(docs/feed.md, History and `as_of`)."""

from collections.abc import Iterable
from typing import Any

from inventory_actors.domain import LocationView, SkuView

FeedEvent = dict[str, Any]


def sku_as_of(
    now: SkuView, at_ms: int, events_newest_first: Iterable[tuple[int, FeedEvent]]
) -> SkuView | None:
    """`now` as it was at `at_ms`, given (at_ms, event) of the SKU's events, newest first,
    from the newest back at least until each of its locations has an event at or before
    `at_ms` (or the log ends). None: the SKU had no stock change yet at that time."""
    at_or_before: dict[str, FeedEvent] = {}
    oldest_after: dict[str, FeedEvent] = {}
    first_after: FeedEvent | None = None  # the SKU's oldest event after `at_ms`
    version: int | None = None
    for event_ms, event in events_newest_first:
        location = event["location"]
        if location is None or event["after"] is None or "on_hand" not in event["after"]:
            continue  # not a level change (an alert)
        if event_ms > at_ms:
            oldest_after[location] = event
            first_after = event
        elif location not in at_or_before:
            at_or_before[location] = event
            version = event["version"] if version is None else version
    if version is None:
        if first_after is None:
            return now
        version = first_after["version"] - 1
        if version <= 0:
            return None
    locations = []
    for level in now.locations:
        state = _state_at(level, at_or_before.get(level.location), oldest_after.get(level.location))
        if state is not None:
            locations.append(state)
    return SkuView(now.sku, version, tuple(locations))


def _state_at(
    now: LocationView, before_or_at: FeedEvent | None, after: FeedEvent | None
) -> LocationView | None:
    if before_or_at is not None:
        image = before_or_at["after"]
    elif after is not None:
        image = after["before"]
        if image["on_hand"] == 0 and image["reserved"] == 0:
            return None  # created after that time (or empty then: the same to a reader)
    else:
        return now
    return LocationView(now.location, image["on_hand"], image["reserved"])
