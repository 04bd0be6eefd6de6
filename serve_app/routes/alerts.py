"""Low-stock thresholds and alerts (docs/alerts.md): `PUT` and `GET
/v1/skus/{sku}/locations/{location}/threshold`, `GET /v1/alerts`."""

from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from starlette.responses import Response

from inventory_actors.cluster.boundary import ThresholdBody
from inventory_actors.domain import DomainError, ThresholdView, limits
from inventory_actors.shard.errors import ServiceError
from serve_app.models import AlertsOut, ThresholdOut
from serve_app.problems import problem_of
from serve_app.routing import (
    COMMON_RESPONSES,
    Admin,
    IdempotencyKeyHeader,
    Reader,
    json_response,
    service_of,
)
from serve_app.service import fingerprint, scoped_key

THRESHOLD_PATH = "/v1/skus/{sku:anytext}/locations/{location}/threshold"
SkuPath = Annotated[str, Path(pattern=limits.ID_PATTERN, description="SKU id")]
LocationPath = Annotated[str, Path(pattern=limits.ID_PATTERN, description="location id")]


def threshold_body(view: ThresholdView) -> dict[str, Any]:
    return {
        "sku": view.sku,
        "location": view.location,
        "low_stock_below": view.low_stock_below,
        "low": view.low,
    }


def add_alert_routes(app: FastAPI) -> None:
    """Added before the stock routes: `GET /v1/skus/{sku:anytext}` would take the threshold's
    path as a SKU id."""

    @app.put(
        THRESHOLD_PATH,
        response_model=ThresholdOut,
        responses=COMMON_RESPONSES,
        summary="Set (or with null remove) the low-stock threshold of one SKU-location",
    )
    async def set_threshold(
        request: Request,
        sku: SkuPath,
        location: LocationPath,
        body: ThresholdBody,
        caller: Admin,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> Response:
        request_print = fingerprint(request.method, request.url.path, await request.body())
        key = scoped_key(caller, idempotency_key)
        command = body.to_command(sku, location)
        outcome = await service_of(request).run_one(command, key, request_print, checked=True)
        headers = dict(caller.headers)
        if outcome.replayed:
            headers["Idempotent-Replayed"] = "true"
        value = outcome.value
        if isinstance(value, DomainError | ServiceError):
            return problem_of(value).response(headers)
        assert isinstance(value, ThresholdView), value
        return json_response(threshold_body(value), headers=headers)

    @app.get(
        THRESHOLD_PATH,
        response_model=ThresholdOut,
        responses=COMMON_RESPONSES,
        summary="The low-stock threshold of one SKU-location (null: none) and whether it is low",
    )
    async def get_threshold(
        request: Request, sku: SkuPath, location: LocationPath, caller: Reader
    ) -> Response:
        view = await service_of(request).client.get_threshold_async(sku, location)
        return json_response(threshold_body(view), headers=caller.headers)

    @app.get(
        "/v1/alerts",
        response_model=AlertsOut,
        responses=COMMON_RESPONSES,
        summary="The SKU-locations whose available stock is below their threshold now",
    )
    async def alerts(request: Request, caller: Reader) -> Response:
        # A shard that is down hides only its own alerts: the others are still worth seeing,
        # and `unavailable_shards` says the list is partial (see docs/alerts.md).
        service = service_of(request)
        found, missing = await service.client.alerts_async(service.settings.call_timeout_seconds)
        body = {
            "alerts": [
                {"sku": sku, "location": location, "available": available, "low_stock_below": below}
                for sku, location, available, below in found
            ],
            "unavailable_shards": missing,
        }
        return json_response(body, headers=caller.headers)
