"""Request bodies are JSON as RFC 8259 defines it, in UTF-8 as the contract says: every route
parses with `loads_strict`, so a body with a byte order mark, in UTF-16 or UTF-32, or with
`NaN` or `Infinity` is a 400 `validation-error` like any other malformed one. Why Starlette's
own parsing is not enough: docs/http.md, "Strict JSON bodies"."""

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads_strict(body: bytes) -> Any:
    """The JSON value of `body`; json.JSONDecodeError unless it is one JSON text in UTF-8."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise json.JSONDecodeError("the body is not UTF-8", "", error.start) from None
    try:
        # Given a str, json.loads refuses a leading byte order mark (it strips one only from
        # bytes); `parse_constant` refuses NaN and the infinities.
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as error:
        # Also an integer of more digits than Python converts, or nesting deeper than the
        # parser's recursion limit: malformed for this API, not a fault.
        raise json.JSONDecodeError(str(error) or type(error).__name__, "", 0) from None


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_strict(await self.body())
        return self._json


class StrictJsonRoute(APIRoute):
    """A route whose body parsing (FastAPI's, through `Request.json`) uses `loads_strict`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            return await handler(StrictJsonRequest(request.scope, request.receive))

        return strict_handler
