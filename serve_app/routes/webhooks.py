"""`/v1/webhooks`: register, list and delete subscriptions, and read their dead letters. The
dispatcher actor delivers; these routes only talk to it."""

import asyncio
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from inventory_actors.feed.webhook_dispatcher import dispatcher
from inventory_actors.shard.errors import IdempotencyKeyReused
from persistence.webhooks_store import Subscription
from serve_app.problems import Problem, not_found, problem_of
from serve_app.render import rfc3339
from serve_app.routing import (
    COMMON_RESPONSES,
    Admin,
    IdempotencyKeyHeader,
    json_response,
    responses_with,
    service_of,
)
from serve_app.service import Service, fingerprint, scoped_key

DISPATCHER_TIMEOUT_SECONDS = 10.0
EventType = Literal[
    "stock.adjusted", "stock.set", "stock.transferred", "reservation.created",
    "reservation.committed", "reservation.released", "reservation.expired", "stock.low",
    "stock.recovered",
]  # fmt: skip
WebhookId = Annotated[str, Path(pattern=r"^wh_[0-9a-f]{16}$")]


class WebhookBody(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: Annotated[str, Field(max_length=2_048, pattern=r"^https?://[^\s]+$")]
    # None or empty: every type.
    events: Annotated[list[EventType], Field(max_length=9)] = []
    secret: Annotated[str, Field(min_length=16, max_length=256)]


def webhook_body(subscription: Subscription) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret."""
    return {
        "id": subscription.subscription_id,
        "url": subscription.url,
        "events": list(subscription.events),
        "created_at": rfc3339(subscription.created_at_ms),
        "delivered": subscription.delivered,
        "dead_letters": subscription.dead_letters,
    }


async def _ask(service: Service, method: str, *args: Any) -> Any:
    handle = dispatcher(service.settings.data_dir, service.settings.namespace)
    try:
        return await asyncio.wait_for(
            getattr(handle, method).remote(*args), DISPATCHER_TIMEOUT_SECONDS
        )
    except Exception:
        raise Problem(
            "shard-unavailable", 503, "the webhook dispatcher did not answer",
            retry_after_seconds=1.0,
        ) from None  # fmt: skip


def add_webhook_routes(app: FastAPI) -> None:
    @app.post("/v1/webhooks", status_code=201, responses=COMMON_RESPONSES, summary="Subscribe")
    async def register(
        request: Request,
        body: WebhookBody,
        caller: Admin,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response:
        service, events = service_of(request), sorted(set(body.events))
        key = scoped_key(caller, idempotency_key)
        if key is None:
            subscription = await _ask(service, "register", body.url, events, body.secret)
            return json_response(webhook_body(subscription), 201, caller.headers)
        # The dispatcher keeps the key with the subscription, atomically: a retry after a 503
        # (the first call may have succeeded) replays that subscription instead of adding one.
        request_print = fingerprint(request.method, request.url.path, await request.body())
        outcome = await _ask(
            service, "register_once", body.url, events, body.secret, key, request_print
        )
        if outcome is None:
            raise problem_of(IdempotencyKeyReused(idempotency_key or ""))
        subscription, replayed = outcome
        headers = {**caller.headers, **({"Idempotent-Replayed": "true"} if replayed else {})}
        return json_response(webhook_body(subscription), 201, headers)

    @app.get("/v1/webhooks", responses=COMMON_RESPONSES, summary="Every subscription")
    async def subscriptions(request: Request, caller: Admin) -> Response:
        found = await _ask(service_of(request), "subscriptions")
        return json_response({"webhooks": [webhook_body(s) for s in found]}, 200, caller.headers)

    @app.delete(
        "/v1/webhooks/{webhook_id}", status_code=204, responses=responses_with(404),
        summary="Unsubscribe",
    )  # fmt: skip
    async def delete(request: Request, webhook_id: WebhookId, caller: Admin) -> Response:
        if not await _ask(service_of(request), "delete", webhook_id):
            raise not_found(f"no webhook {webhook_id}")
        return Response(status_code=204, headers=caller.headers)

    @app.get(
        "/v1/webhooks/{webhook_id}/dead-letters", responses=responses_with(404),
        summary="Events given up on, newest first",
    )  # fmt: skip
    async def dead_letters(
        request: Request,
        webhook_id: WebhookId,
        caller: Admin,
        limit: Annotated[int, Query(ge=1, le=1_000)] = 100,
    ) -> Response:
        service = service_of(request)
        if await _ask(service, "get", webhook_id) is None:
            raise not_found(f"no webhook {webhook_id}")
        letters = await _ask(service, "dead_letters", webhook_id, limit)
        body = [
            {"event": d.event, "attempts": d.attempts, "error": d.error, "at": rfc3339(d.at_ms)}
            for d in letters
        ]
        return json_response({"dead_letters": body}, 200, caller.headers)
