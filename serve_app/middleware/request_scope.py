"""The outermost middleware: each request's id (for the logs here and in the shards) and its
metrics (count by route, method and status; latency; rejections by reason).

Counts are kept in a dict and handed to Ray once a second by `HttpMetrics.run`, so a request
costs a dict increment and one histogram observation, not three metric calls."""

import asyncio
import logging
import re
import time
import uuid
from collections import Counter
from typing import Any

import ray
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inventory_actors.observability import metric_names as names
from inventory_actors.observability.request_context import loggable, request_id
from serve_app.middleware.scope import header
from serve_app.service import current_settings

log = logging.getLogger("inventory.api")

EXPORT_INTERVAL_SECONDS = 1.0
# Answers with these statuses turned a request away before any change; their problem type
# (the body's `type`) names why.
REJECTION_STATUSES = frozenset({413, 429, 503})
_PROBLEM_TYPE = re.compile(rb'"type":\s*"/problems/([a-z-]+)"')
# A request slower than this is logged, with its id.
SLOW_REQUEST_SECONDS = 1.0


class HttpMetrics:
    """Requests, latency and rejections, tallied here and exported to Ray by `run`."""

    def __init__(self, metric_factory: Any = None) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.rejections: Counter[str] = Counter()
        self._factory = metric_factory
        self._latency: Any = None
        self._exported: dict[str, Any] = {}
        # Tags per (route, method), made once: routes are templates, so there are few.
        self._tags: dict[tuple[str, str], dict[str, str]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests[route, method, status] += 1
        if self._latency is not None:
            tags = self._tags.get((route, method))
            if tags is None:
                tags = self._tags[route, method] = {"route": route, "method": method}
            self._latency.observe(seconds, tags=tags)

    def export(self) -> None:
        requests, self.requests = self.requests, Counter()
        rejections, self.rejections = self.rejections, Counter()
        counter = self._exported[names.HTTP_REQUESTS.name]
        for (route, method, status), count in requests.items():
            counter.inc(count, tags={"route": route, "method": method, "status": str(status)})
        counter = self._exported[names.HTTP_REJECTIONS.name]
        for reason, count in rejections.items():
            counter.inc(count, tags={"reason": reason})

    def create(self) -> bool:
        """Make the Ray metrics, once, in this process (a replica); False without Ray."""
        if self._exported:
            return True
        if self._factory is None or not ray.is_initialized():
            return False
        for spec in (names.HTTP_REQUESTS, names.HTTP_REJECTIONS, names.HTTP_REQUEST_SECONDS):
            self._exported[spec.name] = self._factory(spec)
        self._latency = self._exported[names.HTTP_REQUEST_SECONDS.name]
        return True

    async def run(self) -> None:
        """Export every second, for as long as the replica serves."""
        if not self.create():
            return
        while True:
            await asyncio.sleep(EXPORT_INTERVAL_SECONDS)
            self.export()


class Observability:
    """Sets the request id (the client's `X-Request-Id`, which Serve's proxy also passes on,
    or a new one) for everything the request runs, and records the request's metrics."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._exporter: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._exporter is None:  # the replica's loop runs now
            self._exporter = asyncio.get_running_loop().create_task(self.metrics.run())
        given = _given_request_id(scope)
        rid = given or uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        # Serve's proxy passes the client's id on or makes one, and answers with it itself;
        # only a request that came without one (no proxy in front) gets the header from here.
        answer = _Answer(None if given else rid)

        async def send_observed(message: Message) -> None:
            answer.see(message)
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            self._record(scope, answer, time.perf_counter() - started)
            request_id.reset(token)

    def _record(self, scope: Scope, answer: "_Answer", seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path_format", None) or "unmatched"
        method = scope["method"]
        self.metrics.observe(template, method, answer.status, seconds)
        if answer.rejection is not None:
            self.metrics.rejections[answer.rejection] += 1
        failed, slow = answer.status >= 500, seconds >= SLOW_REQUEST_SECONDS
        if failed or slow or current_settings().access_log:
            level = logging.WARNING if failed or slow else logging.INFO
            message = "request failed" if failed else "slow request" if slow else "request"
            extra = {
                "route": template,
                "method": method,
                "status": answer.status,
                "duration_ms": round(seconds * 1000, 1),
            }
            log.log(level, message, extra=extra)


class _Answer:
    """What the app answered: the status, and why a rejection was one."""

    __slots__ = ("header_id", "rejection", "status")

    def __init__(self, header_id: str | None) -> None:
        self.status = 500  # until the app starts an answer (an exception escaped otherwise)
        self.rejection: str | None = None
        self.header_id = header_id

    def see(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            if self.header_id is not None:
                header = (b"x-request-id", self.header_id.encode())
                message["headers"] = [*message.get("headers", ()), header]
        elif self.status in REJECTION_STATUSES and self.rejection is None:
            found = _PROBLEM_TYPE.search(message.get("body", b"")[:256])
            self.rejection = found.group(1).decode() if found else f"status-{self.status}"


def _given_request_id(scope: Scope) -> str | None:
    given = header(scope, b"x-request-id")
    return None if given is None else loggable(given.decode("latin-1"))
