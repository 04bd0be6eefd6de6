"""A body-size bound in front of the app: a body over the limit is refused with 413 before it
is read, or as soon as it grows past the limit when no Content-Length was sent."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serve_app.problems import Problem
from serve_app.service import current_settings


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
        batch = scope["path"] == "/v1/batch"
        limit = settings.batch_body_bytes_max if batch else settings.body_bytes_max
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await self._refuse(limit, scope, receive, send)
                    return
                break
        else:
            receive = _counting(receive, limit)
        try:
            await self.app(scope, receive, send)
        except _TooLarge:
            await self._refuse(limit, scope, receive, send)

    @staticmethod
    async def _refuse(limit: int, scope: Scope, receive: Receive, send: Send) -> None:
        problem = Problem("payload-too-large", 413, f"the body may have at most {limit} bytes")
        await problem.response()(scope, receive, send)


def _counting(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _TooLarge
        return message

    return counted
