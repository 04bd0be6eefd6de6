"""A SKU as it stood at a past time, from its current state and its events in the log. Each
level it has now is as after its newest event by then, else as before its oldest event after,
else as now (levels are never deleted). An error, never a guess, when the log no longer reaches
that time or the walk would be too long (docs/feed.md, History and `as_of`)."""

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any

from inventory_actors.domain import LocationView, SkuView
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.feed_pages import record_events

FeedEvent = dict[str, Any]
Found = list[tuple[int, FeedEvent]]  # (at_ms, event), newest first

# At most this many of a SKU's log records are read for one answer; more is AsOfTooLong.
AS_OF_RECORDS_MAX = 20_000
PAGE_RECORDS = 1_000
_NEWEST = 2**62


class AsOfExpired(Exception):
    """The time is before the oldest change the log still holds: the answer is unknowable."""


class AsOfTooLong(Exception):
    """The answer needs more than AS_OF_RECORDS_MAX of the SKU's records (never guessed from
    fewer)."""


class SkuLog:
    """One SKU's events in its shard's log, read newest first, a page of records at a time, to
    work out the SKU at `at_ms`: at most AS_OF_RECORDS_MAX records over all walks, and
    AsOfExpired at the first page if the log no longer holds every change since `at_ms`."""

    def __init__(
        self, shard: Any, shard_id: int, sku: str, at_ms: int, timeout_seconds: float
    ) -> None:
        self._shard, self._shard_id, self._sku = shard, shard_id, sku
        self.at_ms, self._timeout_seconds = at_ms, timeout_seconds
        self._needle = json.dumps(sku)
        self.read = 0
        self.pruned = False  # whether the log was pruned (its first LSN is above 1)

    async def back(self, until_ms: int, enough: Callable[[Found], bool]) -> tuple[Found, bool]:
        """The SKU's events at or before `until_ms`, newest first, until `enough` of them or
        the log's start; and whether the log's start was reached."""
        found: Found = []
        before_lsn = _NEWEST
        while True:
            if self.read >= AS_OF_RECORDS_MAX:
                raise AsOfTooLong(f"more than {AS_OF_RECORDS_MAX} of the SKU's records")
            records = await self._page(until_ms, before_lsn)
            if not records:
                return found, True
            self.read += len(records)
            for lsn, at_ms, text in records:
                events, _ = record_events(self._shard_id, lsn, at_ms, text)
                found.extend((at_ms, e) for e in reversed(events) if e["sku"] == self._sku)
            if enough(found):
                return found, False
            before_lsn = records[-1][0]

    async def _page(self, until_ms: int, before_lsn: int) -> list[tuple[int, int, str]]:
        ref = self._shard.read_history.remote(self._needle, until_ms, before_lsn, PAGE_RECORDS)
        try:
            first_lsn, since_ms, records = await asyncio.wait_for(ref, self._timeout_seconds)
        except Exception as error:
            raise ShardUnavailable(
                self._shard_id, f"history unavailable: {type(error).__name__}"
            ) from None
        # The shard tells the time from which its log holds every change (None: it never
        # had a record; its newest snapshot's if it was pruned whole).
        self.pruned = first_lsn > 1
        if self.pruned and (since_ms is None or self.at_ms < since_ms):
            raise AsOfExpired(f"the log holds every change only from {since_ms} (ms)")
        return list(records)


async def sku_then(log: SkuLog, now: SkuView) -> SkuView | None:
    """`now` as it was at `log.at_ms`, or None if the SKU had no stock change by then. Raises
    AsOfExpired or AsOfTooLong rather than answer from part of the events it needs."""
    locations = {level.location for level in now.locations}
    at_ms = log.at_ms

    def every_location(found: Found) -> bool:
        return locations <= {event["location"] for _, event in found if _changes_level(event)}

    # Back from that time, each location's newest event by then: a few records however busy
    # the SKU has been since.
    before, ended = await log.back(at_ms, every_location)
    if not ended or not log.pruned:
        # Every location had an event by then, or the log is whole: one without any did not
        # exist yet.
        return sku_as_of(now, at_ms, before, complete=True)
    # Records were pruned: a location without an event by then is as before its oldest event
    # after that time (it may have had pruned ones), or as it is now. Those events come from
    # walking back from now to that time.
    after, _ = await log.back(_NEWEST, lambda found: any(ms <= at_ms for ms, _ in found))
    return sku_as_of(now, at_ms, after + before)


def sku_as_of(
    now: SkuView, at_ms: int, events_newest_first: Iterable[tuple[int, FeedEvent]],
    complete: bool = False,
) -> SkuView | None:  # fmt: skip
    """`now` as it was at `at_ms`, given (at_ms, event) of the SKU's events, newest first,
    from the newest back at least until each of its locations has an event at or before
    `at_ms` (or the log ends). None: the SKU had no stock change yet at that time.
    `complete`: the events hold all of the SKU's at or before `at_ms` that matter (each
    location's newest, or every one): a location without one did not exist then."""
    at_or_before: dict[str, FeedEvent] = {}
    oldest_after: dict[str, FeedEvent] = {}
    first_after: FeedEvent | None = None  # the SKU's oldest event after `at_ms`
    version: int | None = None
    for event_ms, event in events_newest_first:
        if not _changes_level(event):
            continue
        location = event["location"]
        if event_ms > at_ms:
            oldest_after[location] = event
            first_after = event
        elif location not in at_or_before:
            at_or_before[location] = event
            version = event["version"] if version is None else version
    if version is None:
        if complete:
            return None  # no change by then, in a log that holds every one
        if first_after is None:
            return now
        version = first_after["version"] - 1
        if version <= 0:
            return None
    locations = []
    for level in now.locations:
        before = at_or_before.get(level.location)
        if before is None and complete:
            continue
        state = _state_at(level, before, oldest_after.get(level.location))
        if state is not None:
            locations.append(state)
    return SkuView(now.sku, version, tuple(locations))


def _changes_level(event: FeedEvent) -> bool:
    """Not an alert (`stock.low`, `stock.recovered`), which tells no level."""
    after = event["after"]
    return event["location"] is not None and after is not None and "on_hand" in after


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
