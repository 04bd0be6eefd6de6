"""Problem details (RFC 9457): every error the API answers, and how domain and service errors
map onto them. The only place that knows which status an error gets."""

import json
import math
from typing import Any

from starlette.responses import Response

from inventory_actors.domain import (
    DomainError,
    HoldExists,
    HoldNotActive,
    HoldNotFound,
    InsufficientStock,
    InvalidCommand,
    VersionConflict,
)
from inventory_actors.shard.errors import (
    IdempotencyKeyReused,
    NotOwner,
    Overloaded,
    ServiceError,
    ShardUnavailable,
    StorageFailure,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"

TITLES: dict[str, str] = {
    "validation-error": "The request is not valid",
    "unauthorized": "No valid API key",
    "forbidden": "The API key's role does not allow this",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "insufficient-stock": "Not enough available stock",
    "reservation-not-active": "The reservation is not active",
    "version-conflict": "The SKU is not at the expected version",
    "payload-too-large": "The request body is too large",
    "idempotency-key-reused": "The idempotency key was used for a different request",
    "rate-limited": "Too many requests for this API key",
    "overloaded": "The service is overloaded",
    "shard-unavailable": "The shard that owns this data is unavailable",
    # Beyond the contract's list: a command sent to a shard that does not own its data.
    "shard-misrouted": "The request reached a shard that does not own its data",
    # Beyond the contract's list: the change feed's retention (docs/feed.md).
    "cursor-expired": "The events asked for are older than the feed keeps",
    # And an `as_of` that would read more of a SKU's log than one answer may (docs/feed.md).
    "history-too-long": "The SKU's history since then is too long to work this out",
    # Beyond it too: a body that stopped arriving (Settings.body_read_timeout_seconds).
    "request-timeout": "The request body did not arrive in time",
    # And a restock job id that names another file (docs/restock.md, Exactly once).
    "job-id-reused": "The restock job id was used for a different file",
}


class Problem(Exception):
    """An error answer: raise it anywhere in a route, or build one to put in a batch result."""

    def __init__(
        self,
        slug: str,
        status: int,
        detail: str,
        *,
        retry_after_seconds: float | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        assert slug in TITLES, slug
        super().__init__(detail)
        self.slug, self.status, self.detail = slug, status, detail
        self.extensions = extensions
        self.headers = dict(headers or {})
        if retry_after_seconds is not None:
            self.headers["Retry-After"] = str(max(1, math.ceil(retry_after_seconds)))

    def body(self) -> dict[str, Any]:
        return {
            "type": f"/problems/{self.slug}",
            "title": TITLES[self.slug],
            "status": self.status,
            "detail": self.detail,
            **self.extensions,
        }

    def response(self, extra_headers: dict[str, str] | None = None) -> Response:
        headers = {**self.headers, **(extra_headers or {})}
        return Response(
            json.dumps(self.body(), separators=(",", ":")).encode(),
            status_code=self.status,
            headers=headers,
            media_type=PROBLEM_MEDIA_TYPE,
        )


def validation(detail: str, status: int = 422) -> Problem:
    return Problem("validation-error", status, detail)


def not_found(detail: str) -> Problem:
    return Problem("not-found", 404, detail)


def problem_of(error: DomainError | ServiceError) -> Problem:
    """The problem a refused or failed command answers with."""
    match error:
        case InvalidCommand():
            return validation(error.detail)
        case InsufficientStock():
            lines = [
                {"sku": s.sku, "location": s.location, "requested": s.requested}
                | {"available": s.available}
                for s in error.shortages
            ]
            for line in lines:
                if line["location"] is None:
                    del line["location"]
            detail = f"{len(lines)} line(s) cannot be served from available stock"
            return Problem("insufficient-stock", 409, detail, lines=lines)
        case VersionConflict():
            detail = f"SKU {error.sku!r} is at version {error.actual}, not {error.expected}"
            return Problem(
                "version-conflict",
                412,
                detail,
                expected_version=error.expected,
                current_version=error.actual,
            )
        case HoldNotFound():
            return not_found(f"reservation {error.hold_id!r} does not exist")
        case HoldNotActive():
            detail = f"reservation {error.hold_id!r} is {error.status}"
            return Problem("reservation-not-active", 409, detail, reservation_status=error.status)
        case HoldExists():
            detail = f"reservation {error.hold_id!r} already exists"
            return Problem("reservation-not-active", 409, detail)
        case IdempotencyKeyReused():
            detail = "this Idempotency-Key was first used with another method, path or body"
            return Problem("idempotency-key-reused", 422, detail)
        case Overloaded():
            return Problem("overloaded", 503, error.detail, retry_after_seconds=1.0)
        case NotOwner():
            # The service's own routing is wrong, not the request, and the same request is
            # routed the same way again (the map is fixed per data directory): a 500, without
            # Retry-After. Nothing was applied.
            return Problem("shard-misrouted", 500, error.detail, shard=error.shard_id)
        case ShardUnavailable() | StorageFailure():
            return Problem(
                "shard-unavailable",
                503,
                error.detail,
                retry_after_seconds=error.retry_after_seconds or 1.0,
                shard=error.shard_id,
            )
    if isinstance(error, DomainError):
        # A refusal by the rules of the ledger is about the client's request, never a fault.
        return validation(str(error))
    return Problem("overloaded", 503, str(error) or type(error).__name__, retry_after_seconds=1.0)
