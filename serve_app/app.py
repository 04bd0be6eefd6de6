"""The FastAPI app: routes of the HTTP contract (docs/api.md), translated to engine commands.

Routes hold no business rule: they authenticate, parse, build a command, run it through the
replica's Service and render the answer. Answers are written as JSON bytes directly; the
pydantic answer models only document them in `/openapi.json`.
"""

import json
from typing import Annotated, Any

from fastapi import FastAPI, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.responses import Response

from inventory_actors.cluster.boundary import (
    AdjustmentBody,
    CountBody,
    ExtendBody,
    ReservationBody,
    TransferBody,
)
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import (
    CommitHold,
    DomainError,
    ExtendHold,
    HoldView,
    LineRequest,
    ReleaseHold,
    SkuView,
    limits,
)
from inventory_actors.observability.ray_metrics import make_metric
from inventory_actors.shard.errors import ServiceError
from inventory_actors.shard.protocol import Outcome
from serve_app.json_body import StrictJsonRoute, loads_strict
from serve_app.keys import Role
from serve_app.middleware.body_limits import BodyLimit
from serve_app.middleware.request_scope import HttpMetrics, Observability
from serve_app.models import (
    BatchBody,
    BatchOut,
    QueryBody,
    QueryOut,
    ReservationOut,
    SkuOut,
)
from serve_app.problems import Problem, not_found, problem_of, validation
from serve_app.render import etag, reservation_body, sku_body
from serve_app.routes import batch as batch_ops
from serve_app.routes.alerts import add_alert_routes
from serve_app.routes.feed import AsOf, add_feed_routes, add_sku_history_routes, as_of_answer
from serve_app.routes.operator import add_health_routes, add_operator_routes
from serve_app.routes.restock import add_restock_routes
from serve_app.routes.webhooks import add_webhook_routes
from serve_app.routing import (
    COMMON_RESPONSES,
    Admin,
    IdempotencyKeyChecked,
    IdempotencyKeyHeader,
    Reader,
    SkuPath,
    Writer,
    json_response,
    responses_with,
    service_of,
)
from serve_app.service import Caller, fingerprint, scoped_key


class _AnyText(Convertor[str]):
    """Like Starlette's `path` (a SKU id may contain "/"), but matching every character: `path`
    is `.*`, which stops at a newline, so such an id found no route (404) instead of reaching
    the id check (422)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyText())
IfMatchHeader = Annotated[
    str | None,
    Header(alias="If-Match", description='`"<version>"` from an ETag; 412 on mismatch.'),
]
LocationPath = Annotated[str, Path(pattern=limits.ID_PATTERN, description="location id")]
HoldPath = Annotated[str, Path(min_length=1, max_length=limits.HOLD_ID_LENGTH_MAX)]


def expected_version(if_match: str | None) -> int | None:
    """`"7"` (or `W/"7"`) -> 7; `*` -> no condition."""
    if if_match is None or if_match.strip() == "*":
        return None
    tag = if_match.strip().removeprefix("W/")
    if len(tag) >= 3 and tag[0] == tag[-1] == '"' and tag[1:-1].isdigit():
        return int(tag[1:-1])
    raise validation('If-Match must be an entity tag like "7" (from the ETag header)', 400)


def answer(outcome: Outcome, caller: Caller, status: int = 200) -> Response:
    """A command's outcome as the contract's answer, replayed or not."""
    headers = dict(caller.headers)
    if outcome.replayed:
        headers["Idempotent-Replayed"] = "true"
    value = outcome.value
    if isinstance(value, DomainError | ServiceError):
        return problem_of(value).response(headers)
    if isinstance(value, SkuView):
        headers["ETag"] = etag(value.version)
        return json_response(sku_body(value), status, headers)
    assert isinstance(value, HoldView), value
    return json_response(reservation_body(value), status, headers)


async def _run_command(
    request: Request, caller: Caller, command: Any, idempotency_key: str | None
) -> Response:
    body = await request.body()
    print_ = fingerprint(request.method, request.url.path, body)
    key = scoped_key(caller, idempotency_key)
    return answer(await service_of(request).run_one(command, key, print_), caller)


def add_stock_routes(app: FastAPI) -> None:
    @app.get(
        "/v1/skus/{sku:anytext}",
        response_model=SkuOut,
        responses=responses_with(404),
        summary="Stock of one SKU, per location and in total",
    )
    async def get_sku(
        request: Request,
        sku: SkuPath,
        caller: Reader,
        as_of: AsOf = None,
    ) -> Response:
        service = service_of(request)
        if as_of is not None:
            return await as_of_answer(service, sku, as_of, caller)
        view = (await service.client.get_skus_async([sku]))[0]
        if view is None:
            raise not_found(f"SKU {sku!r} has never had stock")
        headers = {**caller.headers, "ETag": etag(view.version)}
        return json_response(sku_body(view), headers=headers)

    @app.post(
        "/v1/skus:query",
        response_model=QueryOut,
        responses=COMMON_RESPONSES,
        summary="Stock of up to 1,000 SKUs",
    )
    async def query_skus(
        request: Request,
        body: QueryBody,
        caller: Reader,
        idempotency_key: IdempotencyKeyChecked = None,
    ) -> Response:
        views = await service_of(request).client.get_skus_async(body.skus)
        items = [sku_body(view) for view in views if view is not None]
        missing = [sku for sku, view in zip(body.skus, views, strict=True) if view is None]
        return json_response({"items": items, "missing": missing}, headers=caller.headers)

    @app.post(
        "/v1/skus/{sku:anytext}/adjustments",
        response_model=SkuOut,
        responses=responses_with(409, 412),
        summary="Add or remove units at one location",
    )
    async def adjust(
        request: Request,
        sku: SkuPath,
        body: AdjustmentBody,
        caller: Admin,
        idempotency_key: IdempotencyKeyHeader = None,
        if_match: IfMatchHeader = None,
    ) -> Response:
        command = body.to_command(sku, expected_version(if_match))
        return await _run_command(request, caller, command, idempotency_key)

    @app.put(
        "/v1/skus/{sku:anytext}/locations/{location}",
        response_model=SkuOut,
        responses=responses_with(409, 412),
        summary="Set on_hand at one location (a physical count)",
    )
    async def count(
        request: Request,
        sku: SkuPath,
        location: LocationPath,
        body: CountBody,
        caller: Admin,
        idempotency_key: IdempotencyKeyHeader = None,
        if_match: IfMatchHeader = None,
    ) -> Response:
        command = body.to_command(sku, location, expected_version(if_match))
        return await _run_command(request, caller, command, idempotency_key)

    @app.post(
        "/v1/skus/{sku:anytext}/transfers",
        response_model=SkuOut,
        responses=responses_with(409, 412),
        summary="Move available units between two locations, atomically",
    )
    async def transfer(
        request: Request,
        sku: SkuPath,
        body: TransferBody,
        caller: Admin,
        idempotency_key: IdempotencyKeyHeader = None,
        if_match: IfMatchHeader = None,
    ) -> Response:
        if body.from_location == body.to_location:
            raise validation("from_location and to_location must differ")
        command = body.to_command(sku, expected_version(if_match))
        return await _run_command(request, caller, command, idempotency_key)


def add_reservation_routes(app: FastAPI) -> None:
    @app.post(
        "/v1/reservations",
        status_code=201,
        response_model=ReservationOut,
        responses=responses_with(409),
        summary="Hold units for a cart or order: every line or none",
    )
    async def reserve(
        request: Request,
        body: ReservationBody,
        caller: Writer,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response:
        _check_ttl(request, body.ttl_seconds)
        key = scoped_key(caller, idempotency_key)
        # With a key, a retry names the same reservation, so it is the same command.
        lines = [LineRequest(line.sku, line.quantity, line.location) for line in body.lines]
        command = InventoryClient.reserve_command(
            lines, body.ttl_seconds * 1000, body.reference, key
        )
        print_ = None
        if key is not None:  # only a keyed request is ever compared with a stored one
            print_ = fingerprint(request.method, request.url.path, await request.body())
        # ReservationBody has validated everything the command carries.
        outcome = await service_of(request).reserve(command, key, print_, checked=True)
        return answer(outcome, caller, 201)

    @app.get(
        "/v1/reservations/{reservation_id}",
        response_model=ReservationOut,
        responses=responses_with(404),
        summary="A reservation and its status",
    )
    async def get_reservation(
        request: Request, reservation_id: HoldPath, caller: Reader
    ) -> Response:
        view = await service_of(request).client.get_hold_async(reservation_id)
        if view is None:
            raise not_found(f"reservation {reservation_id!r} does not exist")
        return json_response(reservation_body(view), headers=caller.headers)

    for verb, kind, text in (
        ("commit", CommitHold, "The held units leave on_hand and reserved"),
        ("release", ReleaseHold, "The held units become available again"),
    ):
        _add_hold_transition(app, verb, kind, text)

    @app.post(
        "/v1/reservations/{reservation_id}/extend",
        response_model=ReservationOut,
        responses=responses_with(404, 409),
        summary="Move an active reservation's expiry to ttl_seconds from now",
    )
    async def extend(
        request: Request,
        reservation_id: HoldPath,
        body: ExtendBody,
        caller: Writer,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response:
        _check_ttl(request, body.ttl_seconds)
        command = ExtendHold(reservation_id, body.ttl_seconds * 1000)
        return await _run_command(request, caller, command, idempotency_key)


def _check_ttl(request: Request, ttl_seconds: int) -> None:
    refusal = service_of(request).settings.ttl_refusal(ttl_seconds)
    if refusal is not None:
        raise validation(refusal)


def _add_hold_transition(app: FastAPI, verb: str, kind: Any, text: str) -> None:
    async def transition(
        request: Request,
        reservation_id: HoldPath,
        caller: Writer,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response:
        # The contract gives these no body. One sent anyway was ignored, so a garbled request
        # (a truncated body, the wrong encoding) committed or released all the same: if there
        # is one, it must at least be JSON.
        body = await request.body()
        if body:
            try:
                loads_strict(body)
            except json.JSONDecodeError:
                raise validation("the body is not valid JSON", 400) from None
        return await _run_command(request, caller, kind(reservation_id), idempotency_key)

    app.post(
        f"/v1/reservations/{{reservation_id}}/{verb}",
        response_model=ReservationOut,
        responses=responses_with(404, 409),
        summary=text,
        name=f"{verb}_reservation",
    )(transition)


def add_batch_route(app: FastAPI) -> None:
    @app.post(
        "/v1/batch",
        response_model=BatchOut,
        responses=COMMON_RESPONSES,
        summary="Up to 10,000 independent operations; each durable before the answer",
    )
    async def batch(
        request: Request,
        body: BatchBody,
        caller: Writer,
        idempotency_key: IdempotencyKeyChecked = None,
    ) -> Response:
        if caller.role < Role.ADMIN and any(
            isinstance(op, batch_ops.STOCK_OPERATIONS) for op in body.operations
        ):
            raise Problem(
                "forbidden",
                403,
                "adjust and set operations need the admin role",
                headers=caller.headers,
            )
        service = service_of(request)
        results = await batch_ops.run(service, caller, body.operations)
        return json_response({"results": results}, headers=caller.headers)


def add_error_handlers(app: FastAPI) -> None:
    def rate_headers(request: Request) -> dict[str, str]:
        headers: dict[str, str] = getattr(request.state, "rate_headers", {})
        return headers

    @app.exception_handler(Problem)
    async def on_problem(request: Request, problem: Problem) -> Response:
        return problem.response(rate_headers(request))

    @app.exception_handler(DomainError)
    @app.exception_handler(ServiceError)
    async def on_error(request: Request, error: Exception) -> Response:
        # Raised rather than returned: a rule refusing a body the models accept (delta 0), or
        # a read whose shard is down (503 shard-unavailable, not a 500).
        assert isinstance(error, DomainError | ServiceError)
        return problem_of(error).response(rate_headers(request))

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> Response:
        errors = error.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return validation("the body is not valid JSON", 400).response(rate_headers(request))
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ())) or "request"
        detail = f"{where}: {first.get('msg', 'invalid')}"
        fields = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in errors[:20]
        ]
        return Problem("validation-error", 422, detail, errors=fields).response(
            rate_headers(request)
        )

    @app.exception_handler(HTTPException)
    async def on_http(request: Request, error: HTTPException) -> Response:
        slug = {
            401: "unauthorized",
            403: "forbidden",
            404: "not-found",
            405: "method-not-allowed",
            413: "payload-too-large",
        }.get(error.status_code, "validation-error")
        status = error.status_code if error.status_code < 500 else 400
        headers = dict(error.headers or {})
        return Problem(slug, status, str(error.detail), headers=headers).response()


def create_app() -> FastAPI:
    """The app; the Serve replica installs its Service (`install_service`) before serving."""
    app = FastAPI(
        title="Inventory service",
        version="1.0.0",
        description="Stock per SKU and location, reservations with a time to live, batches.",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    # Before any route is added: each parses its JSON body strictly (serve_app/json_body.py).
    app.router.route_class = StrictJsonRoute
    add_error_handlers(app)
    add_health_routes(app)
    # Before the SKU routes, whose `{sku}` path would take theirs: `/v1/skus/X/history` is
    # the history of X, not a SKU "X/history".
    add_sku_history_routes(app)
    add_alert_routes(app)
    add_stock_routes(app)
    add_reservation_routes(app)
    add_batch_route(app)
    add_restock_routes(app)
    add_feed_routes(app)
    add_webhook_routes(app)
    add_operator_routes(app)
    app.add_middleware(BodyLimit)
    # Outermost, so it sees every answer, 413s from BodyLimit included.
    app.add_middleware(Observability, metrics=HttpMetrics(make_metric))
    return app
