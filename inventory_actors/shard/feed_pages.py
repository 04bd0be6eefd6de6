"""The change feed's cursor and pages: how far a reader got in each shard's log, a page of a
shard's events, and pages of all shards merged oldest first.

A log record may give several events or none (see `feed_events`), so a position is a record's
LSN and how many of its events were read. A cursor holds one position per shard.
"""

import base64
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from inventory_actors.shard.feed_events import (
    FeedEvent,
    FeedItem,
    events_of,
    record_events,
    record_items,
    rfc3339,
)

__all__ = [
    "Cursor",
    "CursorInvalid",
    "FeedEvent",
    "FeedItem",
    "Merged",
    "Position",
    "ShardEvents",
    "events_of",
    "merge_pages",
    "record_events",
    "record_items",
    "rfc3339",
    "shard_events",
]

_CURSOR_PREFIX = "f1"


class CursorInvalid(ValueError):
    """The cursor is not one this service gave out (or names another shard count)."""


class Position(NamedTuple):
    """Records before `lsn` are read, and the first `skip` events of record `lsn`."""

    lsn: int
    skip: int


class Cursor(NamedTuple):
    positions: tuple[Position, ...]

    @classmethod
    def start(cls, shard_count: int) -> "Cursor":
        """A reader with no cursor: each shard from the oldest record it keeps. Its LSN 0 is
        never given out (the reader puts each shard's first LSN in its place)."""
        return cls((Position(0, 0),) * shard_count)

    def encode(self) -> str:
        text = ",".join(f"{p.lsn}.{p.skip}" for p in self.positions)
        return _CURSOR_PREFIX + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, shard_count: int) -> "Cursor":
        try:
            if not token.startswith(_CURSOR_PREFIX) or len(token) > 40 * shard_count + 16:
                raise ValueError(token)
            body = token[len(_CURSOR_PREFIX) :]
            text = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
            positions = tuple(
                Position(*(int(part) for part in item.split("."))) for item in text.split(",")
            )
        except (ValueError, TypeError, UnicodeDecodeError):
            raise CursorInvalid("the cursor is not one this service gave out") from None
        if len(positions) != shard_count or any(
            p.lsn < 0 or p.skip < 0 or (p.lsn == 0 and p.skip > 0) for p in positions
        ):
            raise CursorInvalid("the cursor is not one this service gave out")
        # A held position 0 (given out before any record of that shard was read) means "from
        # the shard's first record", LSN 1: if that was pruned, the reader must refuse it
        # (410) rather than start at the oldest record kept and skip the rest in silence.
        return cls(tuple(Position(1, 0) if p.lsn == 0 else p for p in positions))

    def with_position(self, shard_id: int, position: Position) -> "Cursor":
        positions = list(self.positions)
        positions[shard_id] = position
        return Cursor(tuple(positions))


class ShardEvents(NamedTuple):
    """A shard's events read from `start`, and its position after each of them. Columns of
    plain values, not an object per event: it travels between processes, and pickling
    thousands of small named tuples cost more than making them."""

    at_ms: list[int]
    types: list[str]
    skus: list[str | None]
    texts: list[str]
    after: list[tuple[int, int]]
    # Where the shard stands when every event above is taken (past eventless records too).
    end: Position

    def item(self, index: int) -> FeedItem:
        return FeedItem(self.at_ms[index], self.types[index], self.skus[index], self.texts[index])


def shard_events(
    shard_id: int, start: Position, records: Sequence[tuple[int, int, str]], limit: int
) -> ShardEvents:
    """At most `limit` events of a page of `records` (lsn, at_ms, events) read from `start`."""
    page = ShardEvents([], [], [], [], [], start)
    for lsn, at_ms, text in records:
        skip = start.skip if lsn == start.lsn else 0
        found, total = record_items(
            shard_id, lsn, at_ms, text, skip, skip + limit - len(page.texts)
        )
        for offset, item in enumerate(found):
            index = skip + offset
            page.at_ms.append(item.at_ms)
            page.types.append(item.type)
            page.skus.append(item.sku)
            page.texts.append(item.text)
            page.after.append((lsn + 1, 0) if index == total - 1 else (lsn, index + 1))
        if len(page.texts) >= limit:
            return page._replace(end=Position(*page.after[-1]))
        page = page._replace(end=Position(lsn + 1, 0))
    return page


class Merged(NamedTuple):
    """The events given out, in order, as (shard, index) into the shards' pages, and the
    cursor after all of them. Items are made only for readers that want them one by one: a
    page's answer needs only the texts."""

    pages: Sequence[ShardEvents]
    order: list[tuple[int, int]]
    cursor: Cursor
    # Where the page began, each shard's position as given out (never the start's LSN 0).
    start: Cursor

    def texts(self) -> list[str]:
        pages = self.pages
        return [pages[shard_id].texts[index] for shard_id, index in self.order]

    def items(self) -> Iterator[tuple[FeedItem, int, Position]]:
        """Each event with its shard and that shard's position after it (what a stream's
        per-event cursor is made of)."""
        for shard_id, index in self.order:
            page = self.pages[shard_id]
            yield page.item(index), shard_id, Position(*page.after[index])


def merge_pages(cursor: Cursor, pages: Sequence[ShardEvents], limit: int) -> Merged:
    """At most `limit` events of the shards' pages, oldest first (by commit time, then shard;
    each shard's own in LSN order), and the cursor after them.

    One sort in C instead of a heap in Python: each event's key is the latest commit time of
    its shard so far (never decreasing within a shard, even if the clock stepped back) with
    its shard and index, so the sort keeps every shard's own order, as a k-way merge would."""
    start = cursor
    keys: list[tuple[int, int, int]] = []
    for shard_id, page in enumerate(pages):
        latest = 0
        for index, at_ms in enumerate(page.at_ms):
            latest = max(latest, at_ms)
            keys.append((latest, shard_id, index))
    keys.sort()
    del keys[limit:]
    taken = [0] * len(pages)
    order = [(shard_id, index) for _, shard_id, index in keys]
    for shard_id, index in order:
        taken[shard_id] = index + 1
    for shard_id, page in enumerate(pages):
        count = taken[shard_id]
        if count == len(page.texts):
            cursor = cursor.with_position(shard_id, page.end)
        elif count:
            cursor = cursor.with_position(shard_id, Position(*page.after[count - 1]))
    return Merged(pages, order, cursor, start)
