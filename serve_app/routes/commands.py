"""What the stock and reservation routes share: running one engine command through the
replica's Service, keyed and fingerprinted, and answering with its outcome."""

from typing import Any

from fastapi import Request
from starlette.responses import Response

from inventory_actors.domain import DomainError, HoldView, SkuView
from inventory_actors.shard.errors import ServiceError
from inventory_actors.shard.protocol import Outcome
from serve_app.problems import problem_of
from serve_app.render import etag, reservation_body, sku_body
from serve_app.routing import json_response, service_of
from serve_app.service import Caller, fingerprint, scoped_key


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


async def run_command(
    request: Request, caller: Caller, command: Any, idempotency_key: str | None
) -> Response:
    body = await request.body()
    print_ = fingerprint(request.method, request.url.path, body)
    key = scoped_key(caller, idempotency_key)
    return answer(await service_of(request).run_one(command, key, print_), caller)
