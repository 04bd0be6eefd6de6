"""The FastAPI app of the HTTP contract (docs/api-contract.md): its routes, one module per
resource under `serve_app/routes/`, its exception handlers and its middleware.

Routes hold no business rule: they authenticate, parse, build a command, run it through the
replica's Service and render the answer (docs/http.md, "How a request travels").
"""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from inventory_actors.domain import DomainError
from inventory_actors.observability.ray_metrics import make_metric
from inventory_actors.shard.errors import ServiceError
from serve_app.json_body import StrictJsonRoute
from serve_app.middleware.body_limits import BodyLimit
from serve_app.middleware.request_scope import HttpMetrics, Observability
from serve_app.problems import Problem, problem_of, validation
from serve_app.routes.alerts import add_alert_routes
from serve_app.routes.batch import add_batch_route
from serve_app.routes.feed import add_feed_routes, add_sku_history_routes
from serve_app.routes.operator import add_health_routes, add_operator_routes
from serve_app.routes.reservations import add_reservation_routes
from serve_app.routes.restock import add_restock_routes
from serve_app.routes.stock import add_stock_routes
from serve_app.routes.webhooks import add_webhook_routes


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
