"""Reading the change feed from the shards: a page of each shard's log after the cursor, turned
into events and merged oldest first."""

import asyncio
import math
from collections.abc import Sequence
from typing import Any

from inventory_actors.cluster.calls import await_read
from inventory_actors.shard.feed_pages import Cursor, Merged, Position, ShardEvents, merge_pages

EVENTS_PER_PAGE_MAX = 10_000
# A shard is asked for about its share of a page (records, and events at most), and at least
# this many: converting events a page then leaves out would be wasted work.
RECORDS_PER_SHARD_MIN = 100
# And about this many bytes of log per event asked (a record is sent whole, at least one): a
# page of a few thousand events must not ship megabytes of records it will not read.


class FeedExpired(Exception):
    """The cursor points before what the log still keeps: events after it were pruned."""

    def __init__(self, shard_id: int, first_lsn: int) -> None:
        super().__init__(shard_id, first_lsn)
        self.shard_id, self.first_lsn = shard_id, first_lsn


class FeedReader:
    """Pages of the change feed; each call reads every shard once, in parallel."""

    def __init__(self, shards: Sequence[Any], timeout_seconds: float) -> None:
        self._shards = shards
        self._timeout_seconds = timeout_seconds

    @property
    def shard_count(self) -> int:
        return len(self._shards)

    async def read(self, cursor: Cursor, limit: int) -> Merged:
        """Up to `limit` events after `cursor`, and the cursor after them. Raises FeedExpired
        when a shard no longer keeps the record a position names (a held position 0 names
        LSN 1: `Cursor.decode`), or ShardUnavailable when a shard does not answer (the cursor
        stays valid: retry)."""
        limit = max(1, min(limit, EVENTS_PER_PAGE_MAX))
        per_shard = max(math.ceil(limit / len(self._shards)), RECORDS_PER_SHARD_MIN)
        answers = await asyncio.gather(
            *(
                await_read(
                    shard_id,
                    shard.feed_page.remote(position, per_shard, max(per_shard * 256, 1 << 16)),
                    self._timeout_seconds,
                )
                for shard_id, (shard, position) in enumerate(
                    zip(self._shards, cursor.positions, strict=True)
                )
            )
        )
        pages: list[ShardEvents] = []
        for shard_id, ((first_lsn, page), position) in enumerate(
            zip(answers, cursor.positions, strict=True)
        ):
            if position.lsn == 0:
                # No cursor: from the oldest record kept, and the cursor given out says which,
                # so a reader that pauses is refused later if that record is pruned meanwhile.
                oldest = Position(first_lsn, 0)
                cursor = cursor.with_position(shard_id, oldest)
                # Nothing read (the shard's log holds no record yet): it stays there.
                pages.append(page._replace(end=oldest) if page.end.lsn == 0 else page)
                continue
            if position.lsn < first_lsn:
                raise FeedExpired(shard_id, first_lsn)
            pages.append(page)
        return merge_pages(cursor, pages, limit)
