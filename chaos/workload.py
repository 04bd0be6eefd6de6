"""The clients of a chaos run: concurrent random operations over HTTP, every one recorded.

Each client draws its operations from its own seeded generator; what they touch is shared (the
run's SKUs and the reservations placed so far), so clients contend like real carts do.
"""

import asyncio
import json
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp

from chaos.history import KEPT_HEADERS, Attempt, History, Kind, Op, Outcome, problem_type

LOCATIONS = ("east", "west")
TTL_SECONDS = (2, 5, 30, 600)
# Operation mix, by weight.
MIX = {
    Kind.RESERVE: 28,
    Kind.COMMIT: 12,
    Kind.RELEASE: 8,
    Kind.EXTEND: 3,
    Kind.ADJUST: 15,
    Kind.TRANSFER: 5,
    Kind.READ: 14,
    Kind.QUERY: 5,
    Kind.REPLAY: 10,
    Kind.KEY_REUSE: 2,
}
# Each request has this long to be answered; later it counts as unknown.
REQUEST_TIMEOUT_SECONDS = 10.0
# Acknowledged mutations a replay may pick from: the most recent ones.
REPLAYABLE_MAX = 2_000
HOLDS_TRACKED_MAX = 5_000
# A keyed request answered 5xx is sent again with its key at once, then after these pauses,
# as a client does that wants its cart (what is still unknown is resolved after the run).
RETRY_PAUSES_SECONDS = (0.0, 0.0, 0.25, 0.5, 1.0)
# An unknown outcome is sent again at most this often after the run, this far apart.
RESOLVE_ATTEMPTS_MAX = 20
RESOLVE_PAUSE_SECONDS = 0.5
RESOLVE_CONCURRENCY = 16

Answer = tuple[int, Any, dict[str, str]]


class Request(NamedTuple):
    method: str
    path: str
    body: dict[str, Any] | None
    # The acknowledged op whose key a REPLAY or KEY_REUSE sends.
    replay_of: int | None = None


@dataclass
class Shared:
    """What every client of a run sees: the SKUs, the open reservations, the history."""

    skus: list[str]
    history: History
    t0: float = field(default_factory=time.monotonic)
    holds: list[str] = field(default_factory=list)
    replayable: deque[int] = field(default_factory=lambda: deque(maxlen=REPLAYABLE_MAX))

    def now(self) -> float:
        return time.monotonic() - self.t0

    def new_op(self, client: int, kind: Kind, request: Request) -> Op:
        op_id = len(self.history.ops)
        keyed = request.method in ("POST", "PUT") and kind is not Kind.QUERY
        key = f"chaos-{op_id}" if keyed else None
        if request.replay_of is not None:
            key = self.history.ops[request.replay_of].key
        method, path, body, replay_of = request
        op = Op(op_id, client, kind, method, path, body, key, self.now(), replay_of=replay_of)
        self.history.ops.append(op)
        return op


async def send(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any,
    key: str | None,
    timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
) -> Answer:
    """(status, JSON answer, kept headers); status 0 when no answer came (timeout, connection
    error)."""
    headers = {} if key is None else {"Idempotency-Key": key}
    try:
        async with session.request(
            method,
            path,
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as response:
            raw = await response.read()
            kept = {
                name: response.headers[name] for name in KEPT_HEADERS if name in response.headers
            }
            try:
                return response.status, json.loads(raw) if raw else None, kept
            except ValueError:
                return response.status, raw.decode(errors="replace")[:200], kept
    except (TimeoutError, aiohttp.ClientError, OSError):
        return 0, None, {}


async def send_again(
    session: aiohttp.ClientSession, op: Op, now: Callable[[], float], after_load: bool
) -> Attempt:
    """Send `op` again with its key, and record the attempt."""
    attempt = Attempt(now(), after_load=after_load)
    op.retries.append(attempt)
    attempt.status, attempt.answer, attempt.headers = await send(
        session, op.method, op.path, op.body, op.key
    )
    attempt.problem, attempt.ended = problem_type(attempt.answer), now()
    return attempt


class Client:
    """One client: picks an operation, sends it, records it, and goes on."""

    def __init__(self, client_id: int, seed: int, shared: Shared) -> None:
        self.client_id = client_id
        self.rng = random.Random(seed * 1_000 + client_id)
        self.shared = shared
        self.kinds = list(MIX)
        self.weights = [MIX[kind] for kind in self.kinds]

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        while not stop.is_set():
            kind = self.rng.choices(self.kinds, self.weights)[0]
            request = self._request(kind)
            if request is None:
                continue
            op = self.shared.new_op(self.client_id, kind, request)
            op.record(*await send(session, op.method, op.path, op.body, op.key), self.shared.now())
            await self._retry_at_once(session, op)
            self._remember(op)

    async def _retry_at_once(self, session: aiohttp.ClientSession, op: Op) -> None:
        """A keyed request the service answered 5xx (it was up, and said so) is sent again."""
        for pause in RETRY_PAUSES_SECONDS:
            final = op.final
            if op.key is None or final.outcome is not Outcome.UNKNOWN or final.status < 500:
                return
            await asyncio.sleep(pause)
            await send_again(session, op, self.shared.now, after_load=False)

    def _request(self, kind: Kind) -> Request | None:
        rng, shared = self.rng, self.shared
        sku = rng.choice(shared.skus)
        reference = f"chaos-ref-{len(shared.history.ops)}"
        body: dict[str, Any] | None
        match kind:
            case Kind.RESERVE:
                lines = [
                    {"sku": name, "quantity": rng.randint(1, 3)}
                    | ({"location": rng.choice(LOCATIONS)} if rng.random() < 0.5 else {})
                    for name in rng.sample(shared.skus, rng.randint(1, 3))
                ]
                body = {"lines": lines, "ttl_seconds": rng.choice(TTL_SECONDS)}
                return Request("POST", "/v1/reservations", body | {"reference": reference})
            case Kind.COMMIT | Kind.RELEASE | Kind.EXTEND:
                if not shared.holds:
                    return None
                hold_id = rng.choice(shared.holds)
                body = {"ttl_seconds": rng.choice(TTL_SECONDS)} if kind is Kind.EXTEND else None
                return Request("POST", f"/v1/reservations/{hold_id}/{kind.value}", body)
            case Kind.ADJUST:
                delta = rng.choice((-3, -2, -1, 1, 2, 3, 5, 8))
                body = {"location": rng.choice(LOCATIONS), "delta": delta, "reason": "correction"}
                return Request(
                    "POST", f"/v1/skus/{sku}/adjustments", body | {"reference": reference}
                )
            case Kind.TRANSFER:
                source, target = rng.sample(LOCATIONS, 2)
                body = {"from_location": source, "to_location": target, "reference": reference}
                body["quantity"] = rng.randint(1, 3)
                return Request("POST", f"/v1/skus/{sku}/transfers", body)
            case Kind.READ:
                return Request("GET", f"/v1/skus/{sku}", None)
            case Kind.QUERY:
                return Request("POST", "/v1/skus:query", {"skus": rng.sample(shared.skus, 5)})
            case Kind.REPLAY | Kind.KEY_REUSE:
                if not shared.replayable:
                    return None
                first = shared.history.ops[rng.choice(shared.replayable)]
                if kind is Kind.REPLAY:
                    return Request(first.method, first.path, first.body, first.op_id)
                body = reused_body(first, reference)
                return (
                    None if body is None else Request(first.method, first.path, body, first.op_id)
                )

    def _remember(self, op: Op) -> None:
        shared = self.shared
        if op.final_outcome is not Outcome.OK or op.kind in (Kind.REPLAY, Kind.KEY_REUSE):
            return
        if op.is_mutation:
            shared.replayable.append(op.op_id)
        hold_id = op.hold_id
        if op.kind is Kind.RESERVE and hold_id is not None:
            shared.holds.append(hold_id)
            if len(shared.holds) > HOLDS_TRACKED_MAX:
                del shared.holds[: HOLDS_TRACKED_MAX // 2]
        elif op.kind in (Kind.COMMIT, Kind.RELEASE) and hold_id in shared.holds:
            shared.holds.remove(hold_id)


def reused_body(first: Op, reference: str) -> dict[str, Any] | None:
    """Another body for `first`'s method, path and key (None if it has none to change). What
    routes the request stays (the lines, the SKU), so the same shard meets the key again."""
    if first.body is None:
        return None
    body = dict(first.body)
    if "reference" in body:
        body["reference"] = reference
    if first.kind is Kind.ADJUST:
        body["delta"] = body["delta"] + 1 if body["delta"] != -1 else 1
    elif first.kind is Kind.EXTEND:
        body["ttl_seconds"] = TTL_SECONDS[(TTL_SECONDS.index(body["ttl_seconds"]) + 1) % 4]
    return body


async def resolve_unknowns(
    session: aiohttp.ClientSession, history: History, now: Callable[[], float]
) -> int:
    """Send every keyed request whose outcome is still unknown again with its key, until the
    service answers it (the first attempt's stored answer, or this one's); several at once, so
    the wait is bounded by one request's. Returns how many it resolved."""
    gate = asyncio.Semaphore(RESOLVE_CONCURRENCY)

    async def resolve(op: Op) -> bool:
        async with gate:
            for _ in range(RESOLVE_ATTEMPTS_MAX):
                if (
                    await send_again(session, op, now, after_load=True)
                ).outcome is not Outcome.UNKNOWN:
                    return True
                await asyncio.sleep(RESOLVE_PAUSE_SECONDS)
            return False

    unknown = [op for op in history.keyed() if op.final_outcome is Outcome.UNKNOWN]
    return sum(await asyncio.gather(*(resolve(op) for op in unknown)))
