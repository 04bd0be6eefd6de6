"""The clients of a chaos run: concurrent random operations over HTTP, every one recorded.

Each client draws its operations from its own seeded generator; what they touch is shared (the
run's SKUs and the reservations placed so far), so clients contend like real carts do.
"""

import asyncio
import json
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chaos.history import History, Kind, Op, Outcome, outcome_of

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
}
# Each request has this long to be answered; later it counts as unknown.
REQUEST_TIMEOUT_SECONDS = 10.0
# Acknowledged mutations a replay may pick from: the most recent ones.
REPLAYABLE_MAX = 2_000
HOLDS_TRACKED_MAX = 5_000
# An unknown outcome is sent again at most this often after the run, this far apart.
RESOLVE_ATTEMPTS_MAX = 20
RESOLVE_PAUSE_SECONDS = 0.5


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

    def new_op(self, client: int, kind: Kind, method: str, path: str, body: Any) -> Op:
        op_id = len(self.history.ops)
        key = f"chaos-{op_id}" if method in ("POST", "PUT") and kind is not Kind.QUERY else None
        op = Op(op_id, client, kind, method, path, body, key, self.now())
        self.history.ops.append(op)
        return op


async def send(
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any,
    key: str | None,
    timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
) -> tuple[int, Any]:
    """(status, JSON answer); status 0 when no answer came (timeout, connection error)."""
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
            try:
                return response.status, json.loads(raw) if raw else None
            except ValueError:
                return response.status, raw.decode(errors="replace")[:200]
    except (TimeoutError, aiohttp.ClientError, OSError):
        return 0, None


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
            op = self.shared.new_op(self.client_id, kind, *request)
            if kind is Kind.REPLAY:
                first = self.shared.history.ops[request[2]["replay_of"]]
                op.body, op.key, op.replay_of = first.body, first.key, first.op_id
            op.status, op.answer = await send(session, op.method, op.path, op.body, op.key)
            op.ended = self.shared.now()
            self._remember(op)

    def _request(self, kind: Kind) -> tuple[str, str, Any] | None:
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
                return "POST", "/v1/reservations", body | {"reference": reference}
            case Kind.COMMIT | Kind.RELEASE | Kind.EXTEND:
                if not shared.holds:
                    return None
                hold_id = rng.choice(shared.holds)
                body = {"ttl_seconds": rng.choice(TTL_SECONDS)} if kind is Kind.EXTEND else None
                return "POST", f"/v1/reservations/{hold_id}/{kind.value}", body
            case Kind.ADJUST:
                delta = rng.choice((-3, -2, -1, 1, 2, 3, 5, 8))
                body = {"location": rng.choice(LOCATIONS), "delta": delta, "reason": "correction"}
                return "POST", f"/v1/skus/{sku}/adjustments", body | {"reference": reference}
            case Kind.TRANSFER:
                source, target = rng.sample(LOCATIONS, 2)
                body = {"from_location": source, "to_location": target, "reference": reference}
                return "POST", f"/v1/skus/{sku}/transfers", body | {"quantity": rng.randint(1, 3)}
            case Kind.READ:
                return "GET", f"/v1/skus/{sku}", None
            case Kind.QUERY:
                return "POST", "/v1/skus:query", {"skus": rng.sample(shared.skus, 5)}
            case Kind.REPLAY:
                if not shared.replayable:
                    return None
                first = shared.history.ops[rng.choice(shared.replayable)]
                return first.method, first.path, {"replay_of": first.op_id}

    def _remember(self, op: Op) -> None:
        shared = self.shared
        if op.outcome is not Outcome.OK or op.kind is Kind.REPLAY:
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


async def resolve_unknowns(session: aiohttp.ClientSession, history: History) -> int:
    """Send every mutation whose outcome is unknown again with its key, until the service
    answers it (the first attempt's answer, or this one's). Returns how many it resolved."""
    resolved = 0
    for op in history.mutations():
        if op.outcome is not Outcome.UNKNOWN:
            continue
        while op.resolve_attempts < RESOLVE_ATTEMPTS_MAX:
            op.resolve_attempts += 1
            op.resolved_status, op.resolved_answer = await send(
                session, op.method, op.path, op.body, op.key
            )
            if outcome_of(op.resolved_status) is not Outcome.UNKNOWN:
                resolved += 1
                break
            await asyncio.sleep(RESOLVE_PAUSE_SECONDS)
    return resolved
