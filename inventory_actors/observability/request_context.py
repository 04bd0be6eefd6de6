"""The id of the HTTP request being served, carried from the API replica to the shard that
runs its commands, so one id finds every log line of a request on both sides."""

from contextvars import ContextVar

# Set by the API's middleware for each request; None outside a request (the Python client,
# timers, restock jobs).
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# A client's own X-Request-Id is kept when it is this long at most; logs cut longer ones.
REQUEST_ID_LENGTH_MAX = 128


def loggable(value: str) -> str:
    """A request id as logs hold it: printable ASCII, at most REQUEST_ID_LENGTH_MAX long."""
    cleaned = "".join(ch for ch in value[:REQUEST_ID_LENGTH_MAX] if " " < ch <= "~")
    return cleaned or "-"
