"""The change feed over HTTP: `GET /v1/events` (pages with a cursor), `GET /v1/events/stream`
(Server-Sent Events, resumable with `Last-Event-ID`), a SKU's history, and a SKU as of a time."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Header, Query, Request
from starlette.responses import Response, StreamingResponse

from inventory_actors.domain import SkuView
from inventory_actors.feed.as_of import (
    AS_OF_RECORDS_MAX,
    AsOfExpired,
    AsOfTooLong,
    SkuLog,
    sku_then,
)
from inventory_actors.feed.reader import FeedExpired, FeedReader
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.feed_pages import Cursor, CursorInvalid, Merged, record_events
from serve_app.problems import Problem, not_found, validation
from serve_app.render import sku_body
from serve_app.routing import (
    COMMON_RESPONSES,
    Reader,
    SkuPath,
    json_response,
    responses_with,
    service_of,
)
from serve_app.service import Caller, Service, Settings

# A cursor is URL-safe base64; bounded so that a request line carrying one (even for hundreds
# of shards) fits the ingress's buffers.
CursorText = Annotated[str | None, Query(max_length=8_192, pattern=r"^[A-Za-z0-9_-]*$")]

PAGE_DEFAULT = 1_000
STREAM_PAGE = 500
# A stream with nothing to send looks again this often (the feed's delivery lag when idle).
STREAM_POLL_SECONDS = 0.05
STREAM_HEARTBEAT_SECONDS = 15.0
HISTORY_LIMIT_MAX = 1_000
# A SKU's history reads at most this many of its log records back.
HISTORY_RECORDS_MAX = 20_000


class _Streams:
    """The event streams this replica serves now (Settings.streams_per_replica_max at most)."""

    def __init__(self) -> None:
        self.open = 0


_streams = _Streams()


def _too_many_streams() -> Problem:
    return Problem(
        "overloaded", 503, "too many event streams on this replica", retry_after_seconds=5.0
    )


def _refuse_if_no_stream_slot(settings: Settings) -> None:
    """At module level on purpose: Serve ships the routes, which are closures, by value, each
    with copies of the globals it names, so a route reading `_streams` itself would count in
    a copy no stream ever takes a slot of."""
    if _streams.open >= settings.streams_per_replica_max:
        raise _too_many_streams()


def _reader(service: Service) -> FeedReader:
    return FeedReader(service.client.shards, service.settings.call_timeout_seconds)


def _cursor(token: str | None, shard_count: int) -> Cursor:
    if not token:
        return Cursor.start(shard_count)
    try:
        return Cursor.decode(token, shard_count)
    except CursorInvalid as error:
        raise validation(str(error), status=400) from None


def _expired(error: FeedExpired) -> Problem:
    return Problem(
        "cursor-expired",
        410,
        f"events after this cursor are older than the feed keeps (shard {error.shard_id} now "
        "starts later): start again without a cursor, or from a newer one",
    )


async def _read(reader: FeedReader, cursor: Cursor, limit: int) -> Merged:
    try:
        return await reader.read(cursor, limit)
    except FeedExpired as error:
        raise _expired(error) from None


def _page_body(merged: Merged) -> bytes:
    events = ",".join(merged.texts())
    return f'{{"events":[{events}],"cursor":"{merged.cursor.encode()}"}}'.encode()


def _time_ms(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise validation("as_of must be an RFC 3339 time, e.g. 2026-11-28T10:00:00Z") from None
    if moment.tzinfo is None:
        raise validation("as_of must name its time zone (e.g. a trailing Z)")
    return int(moment.timestamp() * 1000)


def add_feed_routes(app: FastAPI) -> None:
    @app.get(
        "/v1/events",
        responses=COMMON_RESPONSES,
        summary="Every committed change, oldest first, from a cursor",
    )
    async def events(
        request: Request,
        caller: Reader,
        cursor: CursorText = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = PAGE_DEFAULT,
    ) -> Response:
        service = service_of(request)
        reader = _reader(service)
        merged = await _read(reader, _cursor(cursor, reader.shard_count), limit)
        return Response(_page_body(merged), headers=caller.headers, media_type="application/json")

    @app.get(
        "/v1/events/stream",
        response_class=StreamingResponse,
        responses={
            **COMMON_RESPONSES,
            200: {
                "description": "Events as they are committed; each `id:` is a cursor",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            },
        },
        summary="The change feed as Server-Sent Events; resume with Last-Event-ID",
    )
    async def stream(
        request: Request,
        caller: Reader,
        cursor: CursorText = None,
        last_event_id: Annotated[
            str | None,
            Header(alias="Last-Event-ID", max_length=8_192, pattern=r"^[A-Za-z0-9_-]*$"),
        ] = None,
    ) -> Response:
        service = service_of(request)
        reader = _reader(service)
        start = _cursor(last_event_id or cursor, reader.shard_count)
        await _read(reader, start, 1)  # an expired cursor is refused before the stream starts
        _refuse_if_no_stream_slot(service.settings)
        return StreamingResponse(
            _sse(request, reader, start, service.settings),
            media_type="text/event-stream",
            headers={**caller.headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


async def _sse(
    request: Request, reader: FeedReader, start: Cursor, settings: Settings
) -> AsyncIterator[bytes]:
    """Events as they are committed; each `id:` is the cursor just after that event. The slot
    is taken here, not before the answer starts: a stream that never starts must not hold one
    (so a request that raced another for the last slot ends at once, with an error event)."""
    if _streams.open >= settings.streams_per_replica_max:
        yield _sse_error(_too_many_streams())
        return
    _streams.open += 1
    try:
        yield b": connected\n\n"
        cursor = start
        started = last_sent = time.monotonic()
        while time.monotonic() - started < settings.stream_seconds_max:
            if await request.is_disconnected():
                return
            try:
                merged = await reader.read(cursor, STREAM_PAGE)
            except ShardUnavailable:
                yield b": a shard is unavailable; retrying\n\n"
                await asyncio.sleep(1.0)
                continue
            except FeedExpired as error:
                yield _sse_error(_expired(error))
                return
            if merged.order:
                yield _sse_events(merged)
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent > STREAM_HEARTBEAT_SECONDS:
                yield b": keep-alive\n\n"
                last_sent = time.monotonic()
            if not merged.order:
                await asyncio.sleep(STREAM_POLL_SECONDS)
            cursor = merged.cursor
    finally:
        _streams.open -= 1


def _sse_events(merged: Merged) -> bytes:
    positions = list(merged.start.positions)
    parts = []
    for item, shard_id, position in merged.items():
        positions[shard_id] = position
        token = Cursor(tuple(positions)).encode()
        parts.append(f"id: {token}\nevent: {item.type}\ndata: {item.text}\n\n")
    return "".join(parts).encode()


def _sse_error(problem: Problem) -> bytes:
    return f"event: error\ndata: {json.dumps(problem.body())}\n\n".encode()


def add_sku_history_routes(app: FastAPI) -> None:
    @app.get(
        "/v1/skus/{sku:anytext}/history",
        responses=responses_with(404),
        summary="A SKU's events, newest first",
    )
    async def history(
        request: Request,
        sku: SkuPath,
        caller: Reader,
        limit: Annotated[int, Query(ge=1, le=HISTORY_LIMIT_MAX)] = 100,
    ) -> Response:
        service = service_of(request)
        found = [event for _, event in await _history(service, sku, limit)]
        if not found and (await service.client.get_skus_async([sku]))[0] is None:
            raise not_found(f"SKU {sku!r} has never had stock")
        body = {"sku": sku, "events": found[:limit]}
        return json_response(body, headers=caller.headers)


async def _sku_events(
    service: Service, sku: str
) -> AsyncIterator[list[tuple[int, dict[str, Any]]]]:
    """Pages of the SKU's events, newest first, as [(at_ms, event)]. At most
    HISTORY_RECORDS_MAX records are read."""
    shard_id = service.client.partition.owner(sku=sku)
    shard = service.client.shards[shard_id]
    needle = json.dumps(sku)
    before_lsn, read = 2**62, 0
    while read < HISTORY_RECORDS_MAX:
        ref = shard.read_history.remote(needle, 2**62, before_lsn, 1_000)
        try:
            _, _, records = await asyncio.wait_for(ref, service.settings.call_timeout_seconds)
        except Exception as error:
            raise ShardUnavailable(
                shard_id, f"history unavailable: {type(error).__name__}"
            ) from None
        page: list[tuple[int, dict[str, Any]]] = []
        for lsn, at_ms, text in records:
            found, _ = record_events(shard_id, lsn, at_ms, text)
            events = [event for event in found if event["sku"] == sku]
            page.extend((at_ms, event) for event in reversed(events))
        read += len(records)
        yield page
        if not records:
            return
        before_lsn = records[-1][0]


async def _history(service: Service, sku: str, limit: int) -> list[tuple[int, dict[str, Any]]]:
    found: list[tuple[int, dict[str, Any]]] = []
    async for page in _sku_events(service, sku):
        found.extend(page)
        if len(found) >= limit:
            break
    return found


AsOf = Annotated[str | None, Query(max_length=64, description="RFC 3339: the SKU as it stood then")]


async def as_of_answer(service: Service, sku: str, as_of: str, caller: Caller) -> Response:
    """`GET /v1/skus/{sku}?as_of=`: the SKU then, or 404 if it had no stock change by then."""
    view, _ = await sku_at(service, sku, as_of)
    if view is None:
        raise not_found(f"SKU {sku!r} had had no stock change by {as_of}")
    return json_response(sku_body(view), headers=caller.headers)


async def sku_at(service: Service, sku: str, as_of: str) -> tuple[SkuView | None, str]:
    """The SKU as of the RFC 3339 time `as_of`, or None if it had no stock change by then."""
    at_ms = _time_ms(as_of)
    now = (await service.client.get_skus_async([sku]))[0]
    if now is None:
        return None, as_of
    shard_id = service.client.partition.owner(sku=sku)
    shard, timeout_seconds = service.client.shards[shard_id], service.settings.call_timeout_seconds
    try:
        return await sku_then(SkuLog(shard, shard_id, sku, at_ms, timeout_seconds), now), as_of
    except AsOfExpired:
        raise Problem(
            "cursor-expired", 410, "as_of is older than the events the service keeps"
        ) from None
    except AsOfTooLong:
        raise Problem(
            "history-too-long", 422,
            f"working out the SKU as of then would read more than {AS_OF_RECORDS_MAX} of its "
            "log records; ask for a later time",
        ) from None  # fmt: skip
