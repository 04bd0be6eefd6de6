"""Per-key rate limits: a token bucket for each API key, sized by the key's role. A request
takes `cost` tokens (1, or a batch's operation count: one on arrival, the rest once counted) or
is refused whole; `Decision` carries what the `RateLimit-*` and `Retry-After` headers need.
Each replica keeps its own buckets, so a key's rate is per replica (docs/http.md, "Rate
limits", says how to hold a cluster-wide one)."""

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from enum import StrEnum

from serve_app.keys import Role

# Rounding guard: a bucket that refilled to 2.9999999999 tokens has 3.
TOKEN_EPSILON = 1e-9


@dataclass(frozen=True)
class RoleLimit:
    """One role's bucket: refill rate and size."""

    per_second: float
    burst: int

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and math.isfinite(self.per_second)):
            raise ValueError(f"per_second must be a positive number, not {self.per_second}")
        if self.burst < 1:
            raise ValueError(f"burst must be at least 1, not {self.burst}")


@dataclass(frozen=True)
class RateLimits:
    """Limits per role for one replica. `enabled=False` lets every request through."""

    reader: RoleLimit = RoleLimit(per_second=2_000.0, burst=4_000)
    # A batch costs one token per operation: a full bucket pays for the largest batch (10,000).
    writer: RoleLimit = RoleLimit(per_second=1_000.0, burst=10_000)
    admin: RoleLimit = RoleLimit(per_second=1_000.0, burst=10_000)
    enabled: bool = True
    # Buckets kept at most (one per recently active key).
    buckets_max: int = 100_000

    def __post_init__(self) -> None:
        if self.buckets_max < 1:
            raise ValueError(f"buckets_max must be at least 1, not {self.buckets_max}")

    @classmethod
    def disabled(cls) -> "RateLimits":
        return cls(enabled=False)

    def for_role(self, role: Role) -> RoleLimit:
        return {Role.READER: self.reader, Role.WRITER: self.writer, Role.ADMIN: self.admin}[role]

    def per_replica(self, replicas: int) -> "RateLimits":
        """These limits meant cluster-wide, split over `replicas` replicas that each enforce
        their share (bursts round up, so a burst never drops below 1)."""
        if replicas < 1:
            raise ValueError(f"replicas must be at least 1, not {replicas}")

        def share(limit: RoleLimit) -> RoleLimit:
            return RoleLimit(limit.per_second / replicas, math.ceil(limit.burst / replicas))

        return replace(
            self, reader=share(self.reader), writer=share(self.writer), admin=share(self.admin)
        )


class Refusal(StrEnum):
    """Why a request was refused."""

    # Not enough tokens now: retry after `retry_after_seconds`.
    RATE_LIMITED = "rate-limited"
    # More tokens than the bucket can ever hold: waiting does not help; split the request.
    COST_ABOVE_BURST = "cost-above-burst"


@dataclass(frozen=True)
class Decision:
    """The outcome of one `take`, with what the RateLimit headers need.

    `enforced` is False when limits are disabled; the HTTP layer then sends no headers."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    retry_after_seconds: int = 0
    refusal: Refusal | None = None
    detail: str = ""
    enforced: bool = True

    def headers(self) -> dict[str, str]:
        """`RateLimit-Limit`, `-Remaining`, `-Reset`, and `Retry-After` when refused."""
        if not self.enforced:
            return {}
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_seconds)
        return headers


UNLIMITED = Decision(allowed=True, limit=0, remaining=0, reset_seconds=0, enforced=False)


@dataclass
class _Bucket:
    tokens: float
    updated_s: float


class RateLimiter:
    """Token buckets for the keys one replica serves. Safe to share between threads."""

    def __init__(self, limits: RateLimits | None = None) -> None:
        self.limits = limits or RateLimits()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._mutex = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key_id: str, role: Role, now_s: float, cost: int = 1) -> Decision:
        """Take `cost` tokens from `key_id`'s bucket at time `now_s`, or refuse and take none."""
        if cost < 1:
            raise ValueError(f"cost must be at least 1, not {cost}")
        if not self.limits.enabled:
            return UNLIMITED
        limit = self.limits.for_role(role)
        with self._mutex:
            return self._take(self._refilled(key_id, limit, now_s), limit, role, cost, cost)

    def take_rest(
        self, key_id: str, role: Role, now_s: float, cost: int, taken: int = 1
    ) -> Decision:
        """A request that took `taken` tokens on arrival turns out to cost `cost` (a batch, once
        its body is read): take the other `cost - taken` now, or refuse it whole and take no
        more. The arrival's tokens stay taken: the request was read by then, and refused batches
        must not come free of the key's rate. Retry-After is the wait for all `cost` tokens,
        what a retry takes."""
        if cost < 1 or taken < 0:
            raise ValueError(f"cost must be at least 1 and taken at least 0, not {cost}, {taken}")
        if not self.limits.enabled:
            return UNLIMITED
        limit = self.limits.for_role(role)
        with self._mutex:
            bucket = self._refilled(key_id, limit, now_s)
            return self._take(bucket, limit, role, cost, max(0, cost - taken))

    def _take(self, bucket: _Bucket, limit: RoleLimit, role: Role, cost: int, due: int) -> Decision:
        """Take `due` tokens of a request costing `cost` in all, or refuse and take none."""
        if cost > limit.burst:
            return self._refuse(
                bucket,
                limit,
                cost,
                Refusal.COST_ABOVE_BURST,
                f"a request may cost at most {limit.burst} for role {role.label}, "
                f"not {cost}: split it into smaller batches",
            )
        if bucket.tokens + TOKEN_EPSILON < due:
            return self._refuse(
                bucket,
                limit,
                cost,
                Refusal.RATE_LIMITED,
                f"rate limit of {limit.per_second:g}/s (burst {limit.burst}) reached",
            )
        bucket.tokens = max(0.0, bucket.tokens - due)
        return _decision(bucket, limit)

    def give_back(self, key_id: str, role: Role, cost: int = 1) -> None:
        """Return `cost` tokens taken for a request the service then did not serve (shed by
        admission control): a client is not charged for the server's refusal."""
        if not self.limits.enabled:
            return
        limit = self.limits.for_role(role)
        with self._mutex:
            bucket = self._buckets.get(key_id)
            if bucket is not None:
                bucket.tokens = min(float(limit.burst), bucket.tokens + cost)

    def _refilled(self, key_id: str, limit: RoleLimit, now_s: float) -> _Bucket:
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = _Bucket(tokens=float(limit.burst), updated_s=now_s)
            self._buckets[key_id] = bucket
            # The least recently used bucket has been idle longest and is almost always full
            # again: dropping it loses nothing.
            while len(self._buckets) > self.limits.buckets_max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key_id)
            # A clock that stepped back refills nothing, rather than draining the bucket.
            elapsed_s = max(0.0, now_s - bucket.updated_s)
            bucket.tokens = min(float(limit.burst), bucket.tokens + elapsed_s * limit.per_second)
            bucket.updated_s = max(bucket.updated_s, now_s)
        return bucket

    @staticmethod
    def _refuse(
        bucket: _Bucket, limit: RoleLimit, cost: int, refusal: Refusal, detail: str
    ) -> Decision:
        needed = min(cost, limit.burst) - bucket.tokens
        retry_after_seconds = max(1, math.ceil(needed / limit.per_second - TOKEN_EPSILON))
        return replace(
            _decision(bucket, limit),
            allowed=False,
            retry_after_seconds=retry_after_seconds,
            refusal=refusal,
            detail=detail,
        )


def _decision(bucket: _Bucket, limit: RoleLimit) -> Decision:
    missing = max(0.0, limit.burst - bucket.tokens)
    return Decision(
        allowed=True,
        limit=limit.burst,
        remaining=math.floor(bucket.tokens + TOKEN_EPSILON),
        reset_seconds=max(0, math.ceil(missing / limit.per_second - TOKEN_EPSILON)),
    )
