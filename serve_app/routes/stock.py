"""Stock of SKUs (docs/api-contract.md, "Stock"): a SKU's stock (now or `as_of` a time),
queries of many SKUs, and the admin's adjustments, counts and transfers, each conditional on
`If-Match` when sent."""

import re
from typing import Annotated

from fastapi import FastAPI, Header, Path, Request
from starlette.responses import Response

from inventory_actors.cluster.boundary import AdjustmentBody, CountBody, TransferBody
from inventory_actors.domain import limits
from serve_app.models import QueryBody, QueryOut, SkuOut
from serve_app.problems import not_found, validation
from serve_app.render import etag, sku_body
from serve_app.routes.commands import run_command
from serve_app.routes.feed import AsOf, as_of_answer
from serve_app.routing import (
    COMMON_RESPONSES,
    Admin,
    IdempotencyKeyChecked,
    IdempotencyKeyHeader,
    Reader,
    SkuPath,
    json_response,
    responses_with,
    service_of,
)

IfMatchHeader = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description='`"<version>"` from an ETag, or `*`; 412 on mismatch, 400 if malformed.',
    ),
]
LocationPath = Annotated[str, Path(pattern=limits.ID_PATTERN, description="location id")]


# A version in ASCII digits only (`str.isdigit` also takes "²", which `int` refuses): at most
# 100, far more than any version has and far fewer than Python turns into an int (4,300).
_ENTITY_TAG = re.compile(r'(?:W/)?"([0-9]{1,100})"')


def expected_version(if_match: str | None) -> int | None:
    """`"7"` (or `W/"7"`) -> 7; `*` -> no condition; anything else is a 400 problem."""
    if if_match is None or if_match.strip(" \t") == "*":
        return None
    tag = _ENTITY_TAG.fullmatch(if_match.strip(" \t"))
    if tag is None:
        raise validation('If-Match must be an entity tag like "7" (from the ETag header)', 400)
    return int(tag[1])


def add_stock_routes(app: FastAPI) -> None:
    """Reads first, then changes: the order they appear in `/openapi.json`."""
    _add_stock_reads(app)
    _add_stock_changes(app)


def _add_stock_reads(app: FastAPI) -> None:
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


def _add_stock_changes(app: FastAPI) -> None:
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
        return await run_command(request, caller, command, idempotency_key)

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
        return await run_command(request, caller, command, idempotency_key)

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
        return await run_command(request, caller, command, idempotency_key)
