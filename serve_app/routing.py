"""What every route shares: the `anytext` path convertor (SKU ids), authentication by role,
the answers' documented problems and JSON rendering, and the replica's Service."""

import json
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.convertors import Convertor, register_url_convertor
from starlette.responses import Response

from inventory_actors.domain import limits
from serve_app.keys import Role
from serve_app.models import IDEMPOTENCY_KEY_PATTERN, ProblemOut
from serve_app.problems import PROBLEM_MEDIA_TYPE
from serve_app.service import Caller, Service, current_service

JSON = "application/json"


class _AnyText(Convertor[str]):
    """Like Starlette's `path` (a SKU id may contain "/"), but matching every character: `path`
    is `.*`, which stops at a newline, so such an id found no route (404) instead of reaching
    the id check (422)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


# Registered when this module is imported, so before any route module builds a path with it.
register_url_convertor("anytext", _AnyText())

SkuPath = Annotated[str, Path(pattern=limits.ID_PATTERN, description="SKU id")]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <api key>`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Makes a retry safe: the first answer is stored and replayed.",
    ),
]
# The same header where a route does not store and replay answers (a batch's operations carry
# their own keys): a malformed one is still refused (422) rather than ignored, as the contract
# has every POST and PUT accept only 1 to 255 printable ASCII characters. Left out of
# /openapi.json: a well-formed one changes nothing there.
IdempotencyKeyChecked = Annotated[
    str | None,
    Header(alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY_PATTERN, include_in_schema=False),
]
PROBLEM_RESPONSE = {"model": ProblemOut, "content": {PROBLEM_MEDIA_TYPE: {}}}
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {**PROBLEM_RESPONSE, "description": text}
    for code, text in {
        400: "Malformed request (validation-error)",
        401: "No or unknown API key (unauthorized)",
        403: "The key's role is too low (forbidden)",
        408: "The body stopped arriving (request-timeout)",
        413: "Body too large (payload-too-large)",
        422: "Invalid request (validation-error, idempotency-key-reused)",
        429: "Rate limited or overloaded (rate-limited, overloaded)",
        503: "Shard unavailable or overloaded (shard-unavailable, overloaded)",
    }.items()
}


def responses_with(*codes: int) -> dict[int | str, dict[str, Any]]:
    texts = {
        404: "Not found (not-found)",
        409: "Refused by the stock rules (insufficient-stock, reservation-not-active)",
        412: "If-Match does not match the SKU's version (version-conflict)",
    }
    return {
        **COMMON_RESPONSES,
        **{code: {**PROBLEM_RESPONSE, "description": texts[code]} for code in codes},
    }


def service_of(request: Request) -> Service:
    return current_service()


def _caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None, role: Role
) -> Caller:
    # The header as sent, not as HTTPBearer split it (`credentials`, there for /openapi.json):
    # the service reads it with the admission gate's parser, so both name the same key and the
    # request is charged once however its scheme and spaces are spelled.
    authorization = request.headers.get("authorization")
    caller = service_of(request).authenticate(authorization, role)
    request.state.rate_headers = caller.headers
    return caller


async def reader(request: Request, credentials: Credentials) -> Caller:
    return _caller(request, credentials, Role.READER)


async def writer(request: Request, credentials: Credentials) -> Caller:
    return _caller(request, credentials, Role.WRITER)


async def admin(request: Request, credentials: Credentials) -> Caller:
    return _caller(request, credentials, Role.ADMIN)


Reader = Annotated[Caller, Depends(reader)]
Writer = Annotated[Caller, Depends(writer)]
Admin = Annotated[Caller, Depends(admin)]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=status,
        headers=headers,
        media_type=JSON,
    )
