"""A body-size bound in front of the app: a body over the limit is refused with 413 before it
is read, or as soon as it grows past the limit when no Content-Length was sent."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.problems import Problem
from serve_app.service import Settings, current_settings


class _TooLarge(Exception):
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
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await self._refuse(limit, scope, receive, send)
                    return
                break
        else:
            counted = _Counted(scope, receive, send, limit)
            try:
                await self.app(scope, counted.receive, counted.send)
            except _TooLarge:
                if not counted.refused:
                    await self._refuse(limit, scope, receive, send)
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        await _too_large(limit).response()(scope, receive, send)


def _limit_for(path: str, settings: Settings) -> int:
    if path == "/v1/batch":
        return settings.batch_body_bytes_max
    if path == "/v1/restock-jobs":
        return settings.restock_body_bytes_max
    return settings.body_bytes_max


def _too_large(limit: int) -> Problem:
    return Problem("payload-too-large", 413, f"the body may have at most {limit} bytes")


class _Counted:
    """A body without Content-Length, counted as it arrives. Past the limit, reading fails; the
    app may turn that failure into an answer of its own (FastAPI answers 400 "error parsing the
    body"), so once the limit is passed whatever answer the app starts is replaced by the 413."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        self._scope, self._receive, self._send, self._limit = scope, receive, send, limit
        self._seen = 0
        self.exceeded = self.refused = False

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._seen += len(message.get("body", b""))
            if self._seen > self._limit:
                self.exceeded = True
                raise _TooLarge
        return message

    async def send(self, message: Message) -> None:
        if not self.exceeded:
            await self._send(message)
        elif message["type"] == "http.response.start" and not self.refused:
            self.refused = True
            await _too_large(self._limit).response()(self._scope, self._receive, self._send)
