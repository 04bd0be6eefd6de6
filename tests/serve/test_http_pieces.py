"""Pure pieces of the HTTP layer: problem mapping, rendering, entity tags, config parsing."""

import asyncio
import json
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]
from ray.serve.schema import ServeDeploySchema
from starlette.types import Message, Receive, Scope, Send

from inventory_actors.domain import (
    HoldExists,
    HoldLine,
    HoldNotActive,
    HoldNotFound,
    HoldStatus,
    HoldView,
    InsufficientStock,
    InvalidCommand,
    LocationView,
    Shortage,
    SkuView,
    VersionConflict,
)
from inventory_actors.shard.errors import (
    IdempotencyKeyReused,
    NotOwner,
    Overloaded,
    ShardUnavailable,
    StorageFailure,
)
from serve_app.deployment import settings_from
from serve_app.middleware.body_limits import BodyLimit
from serve_app.problems import Problem, problem_of
from serve_app.render import reservation_body, rfc3339, sku_body
from serve_app.routes.stock import expected_version
from serve_app.service import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        (InvalidCommand("bad"), 422, "validation-error"),
        (InsufficientStock((Shortage("A", None, 2, 1),)), 409, "insufficient-stock"),
        (VersionConflict("A", 1, 2), 412, "version-conflict"),
        (HoldNotFound("r_x"), 404, "not-found"),
        (HoldNotActive("r_x", "released"), 409, "reservation-not-active"),
        (HoldExists("r_x"), 409, "reservation-not-active"),
        (IdempotencyKeyReused("k"), 422, "idempotency-key-reused"),
        (Overloaded("full"), 503, "overloaded"),
        (ShardUnavailable(3, "down"), 503, "shard-unavailable"),
        (StorageFailure(3, "disk"), 503, "shard-unavailable"),
        (NotOwner(1, "SKU", "A", 2), 500, "shard-misrouted"),
    ],
)
def test_every_error_has_its_documented_status_and_type(
    error: Exception, status: int, slug: str
) -> None:
    problem = problem_of(error)  # type: ignore[arg-type]
    body = problem.body()
    assert (problem.status, body["type"], body["status"]) == (status, f"/problems/{slug}", status)
    assert body["title"] and body["detail"]
    if status in (429, 503):
        assert int(problem.headers["Retry-After"]) >= 1


def test_a_misrouted_command_is_a_server_error_that_a_retry_does_not_fix() -> None:
    problem = problem_of(NotOwner(1, "SKU", "A-1", 2))
    assert "Retry-After" not in problem.headers
    assert problem.body()["shard"] == 1
    assert problem.detail == "shard 1 does not own SKU 'A-1': shard 2 does"


def test_short_lines_are_listed_without_a_location_the_service_would_choose() -> None:
    error = InsufficientStock((Shortage("A", None, 5, 2), Shortage("B", "paris", 1, 0)))
    assert problem_of(error).body()["lines"] == [
        {"sku": "A", "requested": 5, "available": 2},
        {"sku": "B", "location": "paris", "requested": 1, "available": 0},
    ]


def test_problem_response_is_problem_json() -> None:
    response = Problem("rate-limited", 429, "slow down", retry_after_seconds=0.2).response()
    assert response.media_type == "application/problem+json"
    assert response.headers["Retry-After"] == "1"


def test_sku_body_totals_and_available() -> None:
    view = SkuView("A", 3, (LocationView("b", 10, 4), LocationView("p", 2, 2)))
    assert sku_body(view) == {
        "sku": "A",
        "version": 3,
        "totals": {"on_hand": 12, "reserved": 6, "available": 6},
        "locations": [
            {"location": "b", "on_hand": 10, "reserved": 4, "available": 6},
            {"location": "p", "on_hand": 2, "reserved": 2, "available": 0},
        ],
    }


def test_reservation_body_times_are_rfc3339_utc() -> None:
    view = HoldView(
        "r_1", HoldStatus.ACTIVE, (HoldLine("A", "b", 2),), 1_700_000_000_123, None, 0, None
    )
    body = reservation_body(view)
    assert body["expires_at"] == "2023-11-14T22:13:20.123Z"
    assert body["status"] == "active" and body["lines"] == [
        {"sku": "A", "location": "b", "quantity": 2}
    ]
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("header", "version"),
    [
        (None, None),
        ("*", None),
        ('"7"', 7),
        ('W/"12"', 12),
        (' "0" ', 0),
        ('"007"', 7),
        # Well-formed, if no SKU is ever at that version (412 then, from the shard).
        ('"' + "9" * 30 + '"', int("9" * 30)),
    ],
)
def test_if_match_parsing(header: str | None, version: int | None) -> None:
    assert expected_version(header) == version


@pytest.mark.parametrize(
    "header",
    [
        "7",
        '"x"',
        '""',
        '"7',
        "W/7",
        '"-1"',
        '"+1"',
        '"1_000"',
        '" 7"',
        '"7", "8"',
        # Digits to `str.isdigit` that are not ASCII: `int` refuses some ("²") and reads others.
        '"²"',
        '"7²"',
        '"١٢"',
        '"\uff11\uff12"',  # fullwidth digits
        # More digits than Python turns into an int.
        '"' + "9" * 5_000 + '"',
    ],
)
def test_malformed_if_match_is_a_400(header: str) -> None:
    with pytest.raises(Problem) as raised:
        expected_version(header)
    assert raised.value.status == 400
    assert raised.value.body()["type"] == "/problems/validation-error"


@pytest.mark.parametrize(
    ("length", "status"),
    [
        (b"5", 200),
        (b"0" * 5_000 + b"5", 200),  # leading zeros are allowed (RFC 9110, 8.6)
        (str(Settings().body_bytes_max + 1).encode(), 413),
        (b"9" * 5_000, 413),  # more digits than Python turns into an int
        (b"", 400),
        (b"-1", 400),
        (b"1e3", 400),
        (b"\xb2", 400),  # "²" in the header's latin-1: a digit to `str.isdigit`
        (b"5, 5", 400),
    ],
)
def test_a_content_length_past_the_limit_or_not_a_number_is_refused_unread(
    length: bytes, status: int
) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"read"})

    sent: list[Message] = []

    async def receive() -> Message:
        if status != 200:
            raise AssertionError("a refused body was read")
        return {"type": "http.request", "body": b"12345", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"content-length", length)]
    scope = {"type": "http", "method": "POST", "path": "/v1/reservations", "headers": headers}
    asyncio.run(BodyLimit(app)(scope, receive, send))
    assert sent[0]["status"] == status
    if status != 200:
        assert (b"content-type", b"application/problem+json") in sent[0]["headers"]
        slug = "payload-too-large" if status == 413 else "validation-error"
        assert json.loads(sent[1]["body"])["type"] == f"/problems/{slug}"


def test_serve_config_is_valid_and_its_args_are_settings() -> None:
    raw = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw)
    app = schema.applications[0]
    assert app.import_path == "serve_app.deployment:build_app"
    settings = settings_from(app.args)
    assert settings.shards == 4 and settings.rate_limits.writer.burst == 10_000


def test_settings_refuse_unknown_names_and_relative_data_dirs() -> None:
    with pytest.raises(ValueError, match="unknown"):
        settings_from({"data_dir": "/d", "shard": 3})
    with pytest.raises(ValueError, match="absolute"):
        settings_from({"data_dir": "data"})
