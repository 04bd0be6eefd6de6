"""The batch endpoint, `POST /v1/batch`: independent operations, each its own command and its
own answer."""

import asyncio
import hashlib
import json
from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.cluster.coordinator import spans_shards
from inventory_actors.domain import (
    AdjustStock,
    Command,
    CommitHold,
    DomainError,
    HoldView,
    InvalidCommand,
    LineRequest,
    ReleaseHold,
    ReserveStock,
    SetStock,
    SkuView,
)
from inventory_actors.shard.errors import ServiceError
from inventory_actors.shard.protocol import Outcome, Submission
from serve_app.keys import Role
from serve_app.models import (
    AdjustOp,
    BatchBody,
    BatchOut,
    CommitOp,
    Operation,
    ReleaseOp,
    ReserveOp,
    SetOp,
)
from serve_app.problems import Problem, problem_of
from serve_app.render import reservation_body, sku_body
from serve_app.routing import (
    COMMON_RESPONSES,
    IdempotencyKeyChecked,
    Writer,
    json_response,
    service_of,
)
from serve_app.service import Caller, Service, scoped_key

STOCK_OPERATIONS = (AdjustOp, SetOp)


def command_of(op: Operation, key: str | None) -> Command:
    match op:
        case ReserveOp():
            lines = tuple(LineRequest(x.sku, x.quantity, x.location) for x in op.lines)
            return InventoryClient.reserve_command(lines, op.ttl_seconds * 1000, op.reference, key)
        case CommitOp():
            return CommitHold(op.reservation_id)
        case ReleaseOp():
            return ReleaseHold(op.reservation_id)
        case AdjustOp():
            return AdjustStock(op.sku, op.location, op.delta, op.reason, op.reference)
        case SetOp():
            return SetStock(op.sku, op.location, op.on_hand, op.reason, op.reference)
    raise AssertionError(f"unknown operation {op!r}")


def op_fingerprint(op: Operation) -> str:
    """The same operation, whatever order its fields came in, has the same fingerprint."""
    fields = op.model_dump(exclude={"idempotency_key"})
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(b"batch\x00" + canonical.encode()).hexdigest()[:32]


def result_of(outcome: Outcome, created: bool) -> dict[str, Any]:
    value = outcome.value
    if isinstance(value, DomainError | ServiceError):
        problem = problem_of(value)
        return {"status": problem.status, "body": problem.body()}
    if isinstance(value, SkuView):
        return {"status": 200, "body": sku_body(value)}
    assert isinstance(value, HoldView), value
    return {"status": 201 if created else 200, "body": reservation_body(value)}


async def run(
    service: Service, caller: Caller, operations: list[Operation]
) -> list[dict[str, Any]]:
    """Reservations whose lines span shards go through the coordinator, one task each;
    everything else (one-shard reservations too) is routed and coalesced per shard in one go."""
    partition, settings = service.client.partition, service.settings
    outcomes: list[Outcome | None] = [None] * len(operations)
    plain: list[tuple[int, Submission]] = []
    # A reserve operation was validated by ReserveOp, whose fields are ReservationBody's: it
    # need not be validated again (the others are, e.g. an adjust's delta of 0).
    checked: list[bool] = []
    holds: list[tuple[int, Awaitable[Outcome]]] = []
    for index, op in enumerate(operations):
        key = scoped_key(caller, op.idempotency_key)
        print_ = op_fingerprint(op) if key is not None else None
        if isinstance(op, ReserveOp) and (refusal := settings.ttl_refusal(op.ttl_seconds)):
            outcomes[index] = Outcome(InvalidCommand(refusal))
            continue
        command = command_of(op, key)
        if isinstance(command, ReserveStock) and spans_shards(partition, command):
            holds.append((index, service.reserve(command, key, print_, checked=True)))
        else:
            plain.append((index, Submission(command, key, print_)))
            checked.append(isinstance(command, ReserveStock))
    placed, answered = await asyncio.gather(
        asyncio.gather(*(hold for _, hold in holds)),
        service.run([sub for _, sub in plain], checked),
    )
    for (index, _), outcome in zip(holds, placed, strict=True):
        outcomes[index] = outcome
    for (index, _), outcome in zip(plain, answered, strict=True):
        outcomes[index] = outcome
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == len(operations)
    return [
        result_of(outcome, isinstance(op, ReserveOp))
        for op, outcome in zip(operations, done, strict=True)
    ]


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
            isinstance(op, STOCK_OPERATIONS) for op in body.operations
        ):
            raise Problem(
                "forbidden",
                403,
                "adjust and set operations need the admin role",
                headers=caller.headers,
            )
        service = service_of(request)
        # One token per operation (docs/http.md, "Rate limits"): the admission gate took one
        # before the body was read; the rest now that its operations are counted, or none runs.
        caller = service.charge(caller, len(body.operations))
        request.state.rate_headers = caller.headers
        results = await run(service, caller, body.operations)
        return json_response({"results": results}, headers=caller.headers)
