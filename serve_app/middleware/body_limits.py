"""Bounds in front of the app on a request's body: its size (413, before it is read or as soon
as it grows past the limit; 400 for a Content-Length that is no number) and how long it may
take to arrive (408 and the connection closed when its next part takes over
`body_read_timeout_seconds`), so a stalled client does not hold a replica's request slot for
as long as the ingress would keep its connection open."""

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.middleware.scope import header
from serve_app.problems import Problem
from serve_app.service import Settings, current_settings


class _Refused(Exception):
    pass


class BodyLimit:
    """Limits come from the replica's settings (`app.state.service.settings`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = current_settings()
        limit = _limit_for(scope["path"], settings)
        declared: int | None = None
        length = header(scope, b"content-length")
        if length is not None:
            declared = _declared(length, limit)
            if declared is None or declared > limit:
                refusal = _not_a_length() if declared is None else _too_large(limit)
                await refusal.response()(scope, receive, send)
                return
        if declared == 0:  # no body: nothing to bound
            await self.app(scope, receive, send)
            return
        # With a Content-Length the size is bounded already; only the time is left to bound.
        guarded = _Guarded(
            scope,
            receive,
            send,
            limit if declared is None else None,
            settings.body_read_timeout_seconds,
        )
        try:
            await self.app(scope, guarded.receive, guarded.send)
        except _Refused:
            if not guarded.refused and guarded.refusal is not None:
                guarded.refused = True
                await guarded.refusal.response()(scope, receive, send)


def _limit_for(path: str, settings: Settings) -> int:
    if path == "/v1/batch":
        return settings.batch_body_bytes_max
    if path == "/v1/restock-jobs":
        return settings.restock_body_bytes_max
    return settings.body_bytes_max


def _declared(length: bytes, limit: int) -> int | None:
    """A Content-Length's value, or `limit + 1` for any above the limit (without turning more
    digits into an int than Python will: 4,300); None if it is not a number (RFC 9110, 8.6:
    ASCII digits only, `bytes.isdigit` takes no other)."""
    if not length.isdigit():
        return None
    digits = length.lstrip(b"0") or b"0"
    return limit + 1 if len(digits) > len(str(limit)) else int(digits)


def _not_a_length() -> Problem:
    return Problem("validation-error", 400, "Content-Length must be a number of bytes")


def _too_large(limit: int) -> Problem:
    return Problem("payload-too-large", 413, f"the body may have at most {limit} bytes")


def _too_slow(timeout_seconds: float) -> Problem:
    # The rest of the body may still come; closing the connection is the only way to be done
    # with it (RFC 9110, 408).
    return Problem(
        "request-timeout",
        408,
        f"no part of the body arrived for {timeout_seconds:g} s; send it again",
        headers={"Connection": "close"},
    )


class _Guarded:
    """The body as it arrives: each part within `timeout_seconds`, and at most `limit` bytes
    in all when no Content-Length bounded it (None: one did). Past either bound, reading fails;
    the app may turn that failure into an answer of its own (FastAPI answers 400 "error parsing
    the body"), so once a bound is passed whatever answer the app starts is replaced by the
    bound's problem. Once the whole body is in, receiving (which then only waits for the client
    to disconnect) is not timed."""

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        limit: int | None,
        timeout_seconds: float,
    ) -> None:
        self._scope, self._receive, self._send = scope, receive, send
        self._limit, self._timeout_seconds = limit, timeout_seconds
        self._seen = 0
        self._body_done = False
        self.refusal: Problem | None = None
        self.refused = False

    async def receive(self) -> Message:
        if self._body_done:
            return await self._receive()
        try:
            async with asyncio.timeout(self._timeout_seconds):
                message = await self._receive()
        except TimeoutError:
            self.refusal = _too_slow(self._timeout_seconds)
            raise _Refused from None
        if message["type"] != "http.request":  # a disconnect: no more body will come
            self._body_done = True
            return message
        self._seen += len(message.get("body", b""))
        if self._limit is not None and self._seen > self._limit:
            self.refusal = _too_large(self._limit)
            raise _Refused
        self._body_done = not message.get("more_body", False)
        return message

    async def send(self, message: Message) -> None:
        if self.refusal is None:
            await self._send(message)
        elif message["type"] == "http.response.start" and not self.refused:
            self.refused = True
            await self.refusal.response()(self._scope, self._receive, self._send)
