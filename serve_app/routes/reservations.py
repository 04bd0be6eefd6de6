"""Reservations (docs/api-contract.md, "Reservations (holds)"; docs/reservations.md): hold
units with a time to live, read a hold, and commit, release or extend it."""

import json
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from starlette.responses import Response

from inventory_actors.cluster.boundary import ExtendBody, ReservationBody
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import CommitHold, ExtendHold, LineRequest, ReleaseHold, limits
from serve_app.json_body import loads_strict
from serve_app.models import ReservationOut
from serve_app.problems import not_found, validation
from serve_app.render import reservation_body
from serve_app.routes.commands import answer, run_command
from serve_app.routing import (
    IdempotencyKeyHeader,
    Reader,
    Writer,
    json_response,
    responses_with,
    service_of,
)
from serve_app.service import fingerprint, scoped_key

HoldPath = Annotated[str, Path(min_length=1, max_length=limits.HOLD_ID_LENGTH_MAX)]


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
        return await run_command(request, caller, command, idempotency_key)


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
        return await run_command(request, caller, kind(reservation_id), idempotency_key)

    app.post(
        f"/v1/reservations/{{reservation_id}}/{verb}",
        response_model=ReservationOut,
        responses=responses_with(404, 409),
        summary=text,
        name=f"{verb}_reservation",
    )(transition)
