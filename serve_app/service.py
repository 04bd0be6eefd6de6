"""What one Serve replica holds: the engine client, the coalescer, the key store and the rate
limiter, and the few steps every route shares (idempotency scoping, running commands)."""

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path

from inventory_actors.cluster.boundary import validate_command
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.cluster.coordinator import place_reservation, step_key
from inventory_actors.domain import ClaimKey, Command, InvalidCommand, ReserveStock
from inventory_actors.domain.limits import TTL_MS_MAX
from inventory_actors.feed.webhook_dispatcher import dispatcher
from inventory_actors.restock.runtime import jobs_actor
from inventory_actors.shard.errors import IdempotencyKeyReused
from inventory_actors.shard.protocol import Outcome, Submission
from serve_app.coalescer import Coalescer
from serve_app.keys import KeyRecord, KeyStore, Role, bearer_key
from serve_app.middleware.admission import Admission, AdmissionLimits
from serve_app.middleware.rate_limit import Decision, RateLimiter, RateLimits
from serve_app.problems import Problem

log = logging.getLogger(__name__)

KIB = 1024


@dataclass(frozen=True)
class Settings:
    """A replica's settings; every bound explicit."""

    data_dir: str = "./data"
    shards: int | None = None
    namespace: str = "inventory"
    # Single-operation bodies are small (a 100-line reservation is about 10 KiB).
    body_bytes_max: int = 256 * KIB
    batch_body_bytes_max: int = 4096 * KIB
    # A restock file is held whole in the replica, then in the object store, while its job
    # runs; larger files go through `inventory restock`, which streams them.
    restock_body_bytes_max: int = 256 * 1024 * KIB
    # The longest wait for the next part of a request body. A request holds one of the
    # replica's `max_ongoing_requests` slots while its body arrives, so a client that stops
    # sending mid-body would hold it for as long as the ingress keeps the connection (an hour):
    # past this it gets 408 and the slot is free. A sending client never pauses this long.
    body_read_timeout_seconds: float = 5.0
    # Every actor call waits at most this long; then the outcome is unknown (503, retry with
    # the same Idempotency-Key).
    call_timeout_seconds: float = 10.0
    readiness_timeout_seconds: float = 2.0
    calls_in_flight_per_shard: int = 2
    commands_per_call_max: int = 1_000
    pending_per_shard_max: int = 20_000
    rate_limits: RateLimits = field(default_factory=RateLimits)
    # How many requests a replica runs and queues before it sheds (middleware/admission.py).
    admission: AdmissionLimits = field(default_factory=AdmissionLimits)
    # The longest reservation (and extension) this deployment accepts; the contract allows up
    # to 24 h, a deployment may choose less.
    ttl_seconds_max: int = 86_400
    # One JSON log line per request (route, status, duration, request id). Off by default:
    # Serve keeps its own access log, and at thousands of requests a second the lines cost.
    # Failed (5xx) and slow requests are logged either way.
    access_log: bool = False
    # Change-feed streams (`GET /v1/events/stream`) a replica serves at once (more: 503), and
    # how long one lasts before the client reconnects with its last id (docs/feed.md).
    streams_per_replica_max: int = 64
    stream_seconds_max: float = 3_600.0

    def __post_init__(self) -> None:
        if not 1 <= self.ttl_seconds_max <= TTL_MS_MAX // 1000:
            raise ValueError(f"ttl_seconds_max must be 1 to {TTL_MS_MAX // 1000}")

    def ttl_refusal(self, ttl_seconds: int) -> str | None:
        """Why `ttl_seconds` is refused here, or None."""
        if ttl_seconds > self.ttl_seconds_max:
            return f"ttl_seconds must be at most {self.ttl_seconds_max} on this service"
        return None


@dataclass(frozen=True)
class Caller:
    """An authenticated request's key, and the rate-limit headers its answers carry."""

    key_id: str
    role: Role
    headers: dict[str, str]


# The rate-limit decision the admission gate took for this request (for the API key its
# `Authorization` presents, as `bearer_key` reads it), so that the route charges it once. Each
# request runs in its own task, and so in its own copy of the context: a value never outlives
# its request.
_checked_at_admission: ContextVar[tuple[str, KeyRecord, Decision] | None] = ContextVar(
    "checked_at_admission", default=None
)


class Service:
    def __init__(
        self, settings: Settings, client: InventoryClient, keys: KeyStore, limiter: RateLimiter
    ) -> None:
        self.settings, self.client, self.keys, self.limiter = settings, client, keys, limiter
        self.admission = Admission(settings.admission)
        self.coalescer = Coalescer(
            client.call_shard,
            calls_in_flight_max=settings.calls_in_flight_per_shard,
            commands_per_call_max=settings.commands_per_call_max,
            pending_max=settings.pending_per_shard_max,
        )

    @classmethod
    def start(cls, settings: Settings) -> "Service":
        client = InventoryClient.connect(
            settings.data_dir,
            shard_count=settings.shards,
            namespace=settings.namespace,
            call_timeout_seconds=settings.call_timeout_seconds,
        )
        keys = KeyStore.open(Path(settings.data_dir))
        # The restock jobs' book, started now rather than by the first job that needs it.
        jobs_actor(settings.data_dir, settings.namespace)
        # And the webhook dispatcher, which resumes its subscriptions' deliveries.
        dispatcher(settings.data_dir, settings.namespace)
        return cls(settings, client, keys, RateLimiter(settings.rate_limits))

    # -- who is calling ----------------------------------------------------------------------

    def authenticate(self, authorization: str | None, required: Role) -> Caller:
        presented = bearer_key(authorization)
        record = self._key_of(presented)
        if record is None:
            raise Problem(
                "unauthorized",
                401,
                "send a valid API key as `Authorization: Bearer <key>`",
                headers={"WWW-Authenticate": 'Bearer realm="inventory"'},
            )
        checked = _checked_at_admission.get()
        if checked is not None and checked[0] == presented:
            decision = checked[2]
        else:
            decision = self.limiter.take(record.key_id, record.role, time.monotonic())
        headers = decision.headers()
        headers.pop("Retry-After", None)
        if not record.role.allows(required):
            detail = f"this route needs the {required.label} role; the key is {record.role.label}"
            raise Problem("forbidden", 403, detail, headers=headers)
        if not decision.allowed:
            raise _rate_limited(decision, headers)
        return Caller(record.key_id, record.role, headers)

    def charge(self, caller: Caller, cost: int) -> Caller:
        """A request whose cost shows in its body (a batch: one token per operation) takes the
        rest beyond the token `authenticate` charged, or is refused whole (429, the arrival's
        token stays taken). The caller, with the headers of what is left."""
        decision = self.limiter.take_rest(caller.key_id, caller.role, time.monotonic(), cost)
        headers = decision.headers()
        headers.pop("Retry-After", None)
        if not decision.allowed:
            raise _rate_limited(decision, headers)
        return replace(caller, headers=headers)

    def rate_check(self, authorization: str | None) -> Problem | None:
        """At admission, before anything else: take the token of the key the request names, so
        a key over its limit hears 429 at once (not after waiting for a slot, and not 503 for a
        load it caused). A request without a valid key passes (its route answers 401);
        `authenticate` then reuses this decision."""
        if not self.limiter.limits.enabled:
            return None
        presented = bearer_key(authorization)
        record = self._key_of(presented)
        if record is None or presented is None:
            return None
        decision = self.limiter.take(record.key_id, record.role, time.monotonic())
        _checked_at_admission.set((presented, record, decision))
        if decision.allowed:
            return None
        headers = decision.headers()
        headers.pop("Retry-After", None)
        return _rate_limited(decision, headers)

    def rate_refund(self) -> None:
        """Give back the token `rate_check` took for this request: it was shed after all."""
        checked = _checked_at_admission.get()
        if checked is not None and checked[2].allowed:
            self.limiter.give_back(checked[1].key_id, checked[1].role)
            _checked_at_admission.set(None)

    def _key_of(self, presented: str | None) -> KeyRecord | None:
        """The active key `presented` (what `bearer_key` read from the request) names."""
        if presented is None:
            return None
        checked = _checked_at_admission.get()
        if checked is not None and checked[0] == presented:
            return checked[1]  # authenticated at admission a moment ago
        return self.keys.authenticate(presented)

    # -- commands ----------------------------------------------------------------------------

    async def run(
        self, submissions: Sequence[Submission], checked: Sequence[bool] | None = None
    ) -> list[Outcome]:
        """Validate, route and run commands; each answer in the order asked. `checked[i]` says
        the i-th command was built from a body the route's model already validated with the
        same rules (see `validate_command`), so it is not validated twice."""
        outcomes: list[Outcome | None] = [None] * len(submissions)
        routed: list[tuple[int, int, Submission]] = []
        for index, sub in enumerate(submissions):
            try:
                if checked is None or not checked[index]:
                    validate_command(sub.command)
                routed.append((index, self.client.shard_of(sub.command), sub))
            except InvalidCommand as error:
                outcomes[index] = Outcome(error)
        refusals = await self._claim_keys([(shard_id, sub) for _, shard_id, sub in routed])
        admitted = []
        for (index, shard_id, sub), refusal in zip(routed, refusals, strict=True):
            if refusal is None:
                admitted.append((index, shard_id, sub))
            else:
                outcomes[index] = refusal
        answers = await self._send([(shard_id, sub) for _, shard_id, sub in admitted])
        for (index, _, _), outcome in zip(admitted, answers, strict=True):
            outcomes[index] = outcome
        return outcomes  # type: ignore[return-value]

    async def _send(self, routed: Sequence[tuple[int, Submission]]) -> list[Outcome]:
        """Each submission through its shard's coalescer, one submit per shard; the answers in
        the order given."""
        groups: dict[int, tuple[list[int], list[Submission]]] = {}
        for index, (shard_id, sub) in enumerate(routed):
            indices, subs = groups.setdefault(shard_id, ([], []))
            indices.append(index)
            subs.append(sub)
        if len(groups) == 1:  # one shard (every single-shard request): no gather, no task
            [(shard_id, (_, subs))] = groups.items()
            answers = [await self.coalescer.submit(shard_id, subs)]
        else:
            answers = await asyncio.gather(
                *(self.coalescer.submit(shard_id, subs) for shard_id, (_, subs) in groups.items())
            )
        outcomes: list[Outcome | None] = [None] * len(routed)
        for (indices, _), answer in zip(groups.values(), answers, strict=True):
            for index, outcome in zip(indices, answer, strict=True):
                outcomes[index] = outcome
        return outcomes  # type: ignore[return-value]

    async def run_one(
        self, command: Command, key: str | None, fingerprint: str | None, checked: bool = False
    ) -> Outcome:
        submission = Submission(command, key, fingerprint if key else None)
        return (await self.run([submission], None if not checked else [True]))[0]

    async def reserve(
        self,
        command: ReserveStock,
        key: str | None,
        fingerprint: str | None,
        checked: bool = False,
    ) -> Outcome:
        """Hold every line or none, across as many shards as the lines live on. `checked`
        says the command was built from an already validated body."""
        if not checked:
            try:
                validate_command(command)
            except InvalidCommand as error:
                return Outcome(error)
        home = self.client.partition.owner(hold=command.hold_id)
        [refusal] = await self._claim_keys([(home, Submission(command, key, fingerprint))])
        if refusal is not None:
            return refusal
        return await place_reservation(
            self.coalescer.submit,
            self.client.partition,
            command,
            key=key,
            fingerprint=fingerprint if key else None,
        )

    async def _claim_keys(self, routed: Sequence[tuple[int, Submission]]) -> list[Outcome | None]:
        """Before keyed commands run, record each key with its request on the key's own shard,
        so a key reused with another request is refused even when that request's SKU lives on
        another shard than the first one's (each shard only knows the keys it ran). Answers a
        refusal per command that must not run, None for the others.

        If the key's shard cannot answer (down, overloaded), the command runs anyway: its own
        shard still replays a true retry, and only the cross-shard check is lost meanwhile."""
        refusals: list[Outcome | None] = [None] * len(routed)
        if all(sub.idempotency_key is None for _, sub in routed):
            return refusals
        partition = self.client.partition
        claims: list[tuple[int, tuple[int, Submission]]] = []
        for index, (shard_id, sub) in enumerate(routed):
            key = sub.idempotency_key
            if key is None or sub.fingerprint is None:
                continue
            claim = Submission(ClaimKey(shard_id), step_key(key, "claim"), sub.fingerprint)
            claims.append((index, (partition.owner(key=key), claim)))
        answers = await self._send([claim for _, claim in claims])
        for (index, _), outcome in zip(claims, answers, strict=True):
            if isinstance(outcome.value, IdempotencyKeyReused):
                key = routed[index][1].idempotency_key
                assert key is not None
                refusals[index] = Outcome(IdempotencyKeyReused(key))
        return refusals


def _rate_limited(decision: Decision, headers: dict[str, str]) -> Problem:
    return Problem(
        "rate-limited",
        429,
        decision.detail,
        retry_after_seconds=decision.retry_after_seconds,
        headers=headers,
    )


def scoped_key(caller: Caller, idempotency_key: str | None) -> str | None:
    """Idempotency keys belong to the API key that sent them: two clients that happen to pick
    the same key never see each other's results. Hashed so any key fits the engine's limit."""
    if idempotency_key is None:
        return None
    raw = f"{caller.key_id}\x00{idempotency_key}".encode()
    return "k" + hashlib.sha256(raw).hexdigest()[:40]


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What "the same request" means for an Idempotency-Key: method, path and exact body."""
    digest = hashlib.sha256(method.encode() + b"\x00" + path.encode() + b"\x00" + body)
    return digest.hexdigest()[:32]


# One Service per replica process. Serve hands the replica its own copy of the FastAPI app, so
# the routes find the Service here rather than on `app.state`.
_current: Service | None = None


def install_service(service: Service) -> None:
    global _current  # noqa: PLW0603
    _current = service


def current_service() -> Service:
    if _current is None:
        raise RuntimeError("no Service installed in this process")
    return _current


def current_settings() -> Settings:
    return _current.settings if _current is not None else Settings()
