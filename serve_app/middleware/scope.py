"""What the ASGI middlewares read from a request's scope before any route runs."""

from starlette.types import Scope


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case, as ASGI gives names), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
