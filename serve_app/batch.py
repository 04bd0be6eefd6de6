"""The batch endpoint: independent operations, each its own command and its own answer."""

import hashlib
import json
from typing import Any

from inventory_actors.domain import (
    AdjustStock,
    Command,
    CommitHold,
    DomainError,
    HoldView,
    LineRequest,
    ReleaseHold,
    ReserveStock,
    SetStock,
    SkuView,
)
from inventory_actors.errors import ServiceError
from inventory_actors.partitioning import new_hold_id, slot_of
from inventory_actors.protocol import Outcome, Submission
from serve_app.models import AdjustOp, CommitOp, Operation, ReleaseOp, ReserveOp, SetOp
from serve_app.problems import problem_of
from serve_app.render import reservation_body, sku_body
from serve_app.service import Caller, Service, scoped_key

STOCK_OPERATIONS = (AdjustOp, SetOp)


def command_of(op: Operation, key: str | None) -> Command:
    match op:
        case ReserveOp():
            seed = None if key is None else key.encode()
            hold_id = new_hold_id(slot_of(op.lines[0].sku), seed)
            lines = tuple(LineRequest(x.sku, x.quantity, x.location) for x in op.lines)
            return ReserveStock(hold_id, lines, op.ttl_seconds * 1000, op.reference)
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
    submissions = []
    for op in operations:
        key = scoped_key(caller, op.idempotency_key)
        print_ = op_fingerprint(op) if key is not None else None
        submissions.append(Submission(command_of(op, key), key, print_))
    # A reserve operation was validated by ReserveOp, whose fields are ReservationBody's: it
    # need not be validated again (the others are, e.g. an adjust's delta of 0).
    checked = [isinstance(op, ReserveOp) for op in operations]
    outcomes = await service.run(submissions, checked)
    return [
        result_of(outcome, isinstance(op, ReserveOp))
        for op, outcome in zip(operations, outcomes, strict=True)
    ]
