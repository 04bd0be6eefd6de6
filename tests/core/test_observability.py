"""The pure parts of metrics and logs, without Ray: the engine's tally and batch observer, the
JSON log format, what a shard logs about a call, and the API middleware on a plain app."""

import asyncio
import json
import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse, Response

from inventory_actors.domain import (
    AdjustStock,
    InsufficientStock,
    ReserveStock,
    SetStock,
    SkuView,
)
from inventory_actors.observability.json_logging import JsonFormatter
from inventory_actors.observability.ray_metrics import command_label
from inventory_actors.observability.request_context import loggable, request_id
from inventory_actors.shard.call_log import REQUEST_IDS_PER_LINE_MAX, log_call
from inventory_actors.shard.errors import Overloaded
from inventory_actors.shard.protocol import Outcome, Submission
from persistence import MemoryShardStore
from serve_app.middleware.request_scope import HttpMetrics, Observability
from tests.core.test_shard_core import Clock, adjust, make_core, reserve, run

# -- the engine's counts ------------------------------------------------------------------------


def test_the_engine_tallies_commands_by_type_and_outcome_and_reports_batches() -> None:
    async def body() -> None:
        core = make_core(MemoryShardStore(), Clock())
        batches: list[tuple[int, float]] = []
        core.on_batch = lambda size, seconds: batches.append((size, seconds))
        await asyncio.gather(*(core.run_command(adjust(1)) for _ in range(5)))
        await core.run_command(reserve("h1", quantity=2))
        await core.run_command(reserve("h2", quantity=100))  # only 3 left
        keyed = [Submission(adjust(1), "key-1")]
        await core.submit(keyed)
        await core.submit(keyed)  # replayed
        await core.submit([Submission(adjust(2), "key-1")])  # same key, other command
        assert core.tally == {
            (AdjustStock, "ok"): 6,
            (ReserveStock, "ok"): 1,
            (ReserveStock, InsufficientStock.slug): 1,
            (AdjustStock, "replayed"): 1,
            (AdjustStock, "idempotency-key-reused"): 1,
        }
        assert sum(size for size, _ in batches) == 10
        assert all(seconds >= 0 for _, seconds in batches)
        await core.stop()

    run(body)


def test_command_labels_are_snake_case() -> None:
    assert command_label(ReserveStock) == "reserve_stock"
    assert command_label(SetStock) == "set_stock"


# -- JSON logs ------------------------------------------------------------------------------------


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "t", "levelname": "INFO", "msg": message})
    record.__dict__.update(extra)
    return record


def test_a_log_line_is_one_json_object_with_the_request_id() -> None:
    formatter = JsonFormatter("api")
    token = request_id.set("rid-1")
    try:
        line = formatter.format(_record("hello %s", shard=3))
    finally:
        request_id.reset(token)
    entry = json.loads(line)
    assert entry["message"] == "hello %s"
    assert entry["component"] == "api" and entry["level"] == "INFO"
    assert entry["request_id"] == "rid-1" and entry["shard"] == 3
    assert entry["ts"].endswith("Z") and "\n" not in line
    assert "request_id" not in json.loads(formatter.format(_record("outside a request")))


def test_request_ids_are_cut_to_printable_ascii() -> None:
    assert loggable("a b\nc") == "abc"
    assert len(loggable("x" * 1_000)) == 128
    assert loggable("\n") == "-"


# -- a shard's call log ---------------------------------------------------------------------------


def _view() -> SkuView:
    return SkuView("A", 1, ())


def test_a_call_logs_stock_changes_and_refusals_with_their_request_ids(
    caplog: pytest.LogCaptureFixture,
) -> None:
    subs = [
        Submission(adjust(1)),
        Submission(reserve("h1")),
        Submission(reserve("h2")),
        Submission(adjust(2)),
    ]
    outcomes = [
        Outcome(_view()),
        Outcome(_view()),
        Outcome(Overloaded("queue is full")),
        Outcome(_view()),
    ]
    with caplog.at_level(logging.INFO, logger="inventory.shard"):
        log_call(7, subs, outcomes, ["r1", "r2", "r3", "r1"])
    changed, failed = caplog.records
    assert changed.__dict__["commands"] == {"AdjustStock": 2}
    assert changed.__dict__["request_ids"] == ["r1"]
    assert failed.levelno == logging.WARNING
    assert failed.__dict__["errors"] == {"overloaded": 1}
    assert failed.__dict__["request_ids"] == ["r3"]


def test_reservations_alone_are_not_logged_and_lines_stay_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="inventory.shard"):
        log_call(0, [Submission(reserve("h"))], [Outcome(_view())], ["r"])
        assert caplog.records == []
        many = [Submission(adjust(1))] * 1_000
        log_call(0, many, [Outcome(_view())] * 1_000, [f"r{i}" for i in range(1_000)])
    (line,) = caplog.records
    assert len(line.__dict__["request_ids"]) == REQUEST_IDS_PER_LINE_MAX


# -- the API middleware ---------------------------------------------------------------------------


def _app(metrics: HttpMetrics) -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: str) -> Response:
        return JSONResponse({"item": item_id, "request_id": request_id.get()})

    @app.get("/busy")
    async def busy() -> Response:
        body = b'{"type":"/problems/rate-limited","status":429}'
        return Response(body, 429, media_type="application/problem+json")

    app.add_middleware(Observability, metrics=metrics)
    return app


def test_the_middleware_counts_by_route_template_and_names_rejections() -> None:
    metrics = HttpMetrics()
    with TestClient(_app(metrics)) as client:
        for item in ("a", "b"):
            assert client.get(f"/items/{item}").status_code == 200
        assert client.get("/busy").status_code == 429
        assert client.get("/nowhere").status_code == 404
    assert metrics.requests == {
        ("/items/{item_id}", "GET", 200): 2,
        ("/busy", "GET", 429): 1,
        ("unmatched", "GET", 404): 1,
    }
    assert metrics.rejections == {"rate-limited": 1}


def test_the_middleware_keeps_a_given_request_id_and_makes_one_otherwise() -> None:
    with TestClient(_app(HttpMetrics())) as client:
        given = client.get("/items/a", headers={"X-Request-Id": "abc-1"})
        made = client.get("/items/a")
    # A given id is the proxy's to echo (Serve does); the handler sees it either way.
    assert given.json()["request_id"] == "abc-1"
    assert "x-request-id" not in given.headers
    (header,) = made.headers.get_list("x-request-id")
    assert made.json()["request_id"] == header and len(header) == 32
