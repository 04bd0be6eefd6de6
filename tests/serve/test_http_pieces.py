"""Pure pieces of the HTTP layer: problem mapping, rendering, entity tags, config parsing."""

from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]
from ray.serve.schema import ServeDeploySchema

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
from serve_app.problems import Problem, problem_of
from serve_app.render import reservation_body, rfc3339, sku_body
from serve_app.routes.stock import expected_version

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
    ("header", "version"), [(None, None), ("*", None), ('"7"', 7), ('W/"12"', 12), (' "0" ', 0)]
)
def test_if_match_parsing(header: str | None, version: int | None) -> None:
    assert expected_version(header) == version


@pytest.mark.parametrize("header", ["7", '"x"', '""', '"7', "W/7"])
def test_malformed_if_match_is_a_400(header: str) -> None:
    with pytest.raises(Problem) as raised:
        expected_version(header)
    assert raised.value.status == 400


def test_serve_config_is_valid_and_its_args_are_settings() -> None:
    raw = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(raw)
    app = schema.applications[0]
    assert app.import_path == "serve_app.deployment:build_app"
    settings = settings_from(app.args)
    assert settings.shards == 4 and settings.rate_limits.writer.burst == 2000


def test_settings_refuse_unknown_names_and_relative_data_dirs() -> None:
    with pytest.raises(ValueError, match="unknown"):
        settings_from({"data_dir": "/d", "shard": 3})
    with pytest.raises(ValueError, match="absolute"):
        settings_from({"data_dir": "data"})
