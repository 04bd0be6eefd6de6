"""Admission control: each replica answers the load it cannot take at once (503 `overloaded`,
429 `rate-limited`, both with `Retry-After`) instead of letting it wait for seconds first.
The gate, the first thing the app runs, takes the key's rate-limit token, sheds when the line
is full or not moving, and otherwise runs the request or lines it up for a slot. Why here and
not in Serve, and how the bounds are sized: docs/http.md, "Admission gate"."""

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from serve_app.middleware.scope import header
from serve_app.problems import Problem

# Never gated: a probe must see the replica as it is, even when it sheds.
UNGATED_PATHS = frozenset({"/healthz", "/readyz"})
# Rate-checked, but take no slot and are not shed: they stay open while the client listens.
UNCOUNTED_PATHS = frozenset({"/v1/events/stream"})


@dataclass(frozen=True)
class AdmissionLimits:
    """One replica's bounds. `enabled=False` lets every request run at once."""

    # Requests running in the app at once.
    running_max: int = 64
    # Requests waiting for a running slot, at most; beyond, arrivals are shed.
    queued_max: int = 512
    # Arrivals are shed while the longest waiting request has waited longer than this.
    queue_wait_max_seconds: float = 2.0
    # What a shed request is told to wait before retrying.
    retry_after_seconds: int = 1
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.running_max < 1:
            raise ValueError(f"running_max must be at least 1, not {self.running_max}")
        if self.queued_max < 0:
            raise ValueError(f"queued_max must be at least 0, not {self.queued_max}")
        if not self.queue_wait_max_seconds > 0:
            raise ValueError("queue_wait_max_seconds must be positive")
        if self.retry_after_seconds < 1:
            raise ValueError("retry_after_seconds must be at least 1")

    @classmethod
    def disabled(cls) -> "AdmissionLimits":
        return cls(enabled=False)


@dataclass
class AdmissionStats:
    admitted: int = 0
    queued: int = 0
    shed: int = 0
    # The longest any admitted request waited for its slot, in seconds.
    wait_max_seconds: float = 0.0


class Admission:
    """Running slots and the line for them, in one replica (one event loop; no locks).

    `shed_reason` says whether an arrival is turned away; `enter` gives it a slot or a place in
    line; `leave` hands the slot of a finished request to the longest waiting one."""

    def __init__(
        self, limits: AdmissionLimits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or AdmissionLimits()
        self.clock = clock
        self.running = 0
        self._waiting: deque[tuple[float, asyncio.Future[None]]] = deque()
        self.stats = AdmissionStats()

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def oldest_wait_seconds(self, now_s: float) -> float:
        return now_s - self._waiting[0][0] if self._waiting else 0.0

    def shed_reason(self, now_s: float) -> str | None:
        """Why a request arriving at `now_s` is shed, or None when it may run or wait."""
        if self._runs_now():
            return None
        limits = self.limits
        if len(self._waiting) >= limits.queued_max:
            return f"{self.running} requests run and {len(self._waiting)} wait in this replica"
        waited = self.oldest_wait_seconds(now_s)
        if waited > limits.queue_wait_max_seconds:
            return (
                f"requests wait {waited:.1f} s for this replica, longer than "
                f"{limits.queue_wait_max_seconds:g} s"
            )
        return None

    def shed(self, reason: str) -> Problem:
        self.stats.shed += 1
        return Problem(
            "overloaded",
            503,
            f"the service is at capacity ({reason}); retry later",
            retry_after_seconds=self.limits.retry_after_seconds,
        )

    def enter(self, now_s: float) -> "asyncio.Future[None] | None":
        """A slot now (None), or a place in line: the future is done when the slot is handed
        over. Call `shed_reason` first; `enter` itself refuses nothing."""
        self.stats.admitted += 1
        if self._runs_now():
            self.running += 1
            return None
        self.stats.queued += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((now_s, future))
        return future

    def _runs_now(self) -> bool:
        """An arrival runs at once: a slot is free and nobody waits for one."""
        limits = self.limits
        return not limits.enabled or (not self._waiting and self.running < limits.running_max)

    def leave(self) -> None:
        """A running request is done: its slot goes to the longest waiting request."""
        while self._waiting:
            since_s, future = self._waiting.popleft()
            if not future.done():
                self.stats.wait_max_seconds = max(
                    self.stats.wait_max_seconds, self.clock() - since_s
                )
                future.set_result(None)  # the slot passes on: `running` stays
                return
        self.running -= 1

    def abandon(self, future: "asyncio.Future[None]") -> None:
        """A waiting request went away (its client disconnected): out of line, and if the slot
        had already been handed to it, on to the next."""
        if future.done() and not future.cancelled():
            self.leave()
            return
        future.cancel()
        for entry in self._waiting:
            if entry[1] is future:
                self._waiting.remove(entry)
                break


class Gatekeeper(Protocol):
    """What the gate needs of the replica's Service."""

    admission: Admission

    def rate_check(self, authorization: str | None) -> Problem | None:
        """Take the caller's rate-limit token now: a 429 problem if refused, else None."""
        ...

    def rate_refund(self) -> None:
        """Give back the token `rate_check` took: the request was shed."""
        ...


class AdmissionGate:
    """The ASGI middleware: rate-check, shed, then run or wait in line, as the module says."""

    def __init__(self, app: ASGIApp, service_of: Callable[[], Gatekeeper]) -> None:
        self.app = app
        self.service_of = service_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (path := _route_path(scope)) in UNGATED_PATHS:
            await self.app(scope, receive, send)
            return
        service = self.service_of()
        authorization = header(scope, b"authorization")
        refusal = service.rate_check(
            None if authorization is None else authorization.decode("latin-1")
        )
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        if path in UNCOUNTED_PATHS:
            await self.app(scope, receive, send)
            return
        admission = service.admission
        now_s = admission.clock()
        reason = admission.shed_reason(now_s)
        if reason is not None:
            service.rate_refund()
            await admission.shed(reason).response()(scope, receive, send)
            return
        waiting = admission.enter(now_s)
        if waiting is not None:
            try:
                await waiting
            except asyncio.CancelledError:
                admission.abandon(waiting)
                raise
        try:
            await self.app(scope, receive, send)
        finally:
            admission.leave()


def _route_path(scope: Scope) -> str:
    """The path within the app (Serve mounts an app under its route prefix as `root_path`)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
