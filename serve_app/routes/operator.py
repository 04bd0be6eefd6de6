"""What operators look at: health (`/healthz`, `/readyz`), every shard's state and figures
(`/v1/shards`), the newest events (`/v1/events/recent`) and the console (`/console`) that shows
them. The console's files are static and hold no data; the data needs a reader key."""

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from starlette.responses import FileResponse, Response

from inventory_actors.observability import metric_names as names
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.feed_events import record_events
from inventory_actors.shard.protocol import ShardStatus
from serve_app.models import ReadyOut
from serve_app.problems import not_found
from serve_app.routing import COMMON_RESPONSES, Reader, json_response, service_of
from serve_app.service import Service

log = logging.getLogger("inventory.api")

# The console ships inside the serve_app package, beside this routes folder.
CONSOLE_DIR = Path(__file__).resolve().parents[1] / "console"
CONSOLE_FILES = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}
RECENT_EVENTS_MAX = 200
# The figures of a shard's status the API shows (ShardStatus has more, for `inventory status`).
STATUS_FIELDS = (
    "last_lsn",
    "queue_depth",
    "sku_count",
    "level_count",
    "active_holds",
    "commands",
    "batches",
    "overloaded",
    "storage_failures",
    "recovery_seconds",
    "snapshots_completed",
    "pid",
)


def shard_state(shard_id: int, status: ShardStatus | ShardUnavailable) -> dict[str, Any]:
    """One shard as the API shows it: ready, recovering (answering, its file not loaded) or
    unreachable (no answer in time: down, restarting, or loading its file)."""
    if isinstance(status, ShardUnavailable):
        entry: dict[str, Any] = {"shard": shard_id, "state": "unreachable", "detail": status.detail}
        return entry | dict.fromkeys(STATUS_FIELDS)
    state = "ready" if status.available else "recovering"
    entry = {"shard": shard_id, "state": state, "detail": None}
    return entry | {name: getattr(status, name) for name in STATUS_FIELDS}


async def shard_states(service: Service) -> list[dict[str, Any]]:
    statuses = await service.client.status_async(service.settings.readiness_timeout_seconds)
    return [shard_state(shard_id, status) for shard_id, status in enumerate(statuses)]


class ShardWatch:
    """Each replica's view of the shards, as the `inventory_shard_up` gauge: refreshed by the
    replica's health check (every few seconds), which must not fail when a shard is down."""

    def __init__(self, metric_factory: Any) -> None:
        self._gauge = metric_factory(names.SHARD_UP)

    async def refresh(self, service: Service) -> None:
        try:
            states = await shard_states(service)
        except Exception:
            # A replica is not unhealthy because it could not ask the shards how they are.
            log.exception("could not read the shards' states")
            return
        for entry in states:
            up = 1.0 if entry["state"] == "ready" else 0.0
            self._gauge.set(up, tags={"shard": str(entry["shard"])})


def add_health_routes(app: FastAPI) -> None:
    @app.get("/healthz", summary="200 while the process serves")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        response_model=ReadyOut,
        responses={503: {"model": ReadyOut, "description": "Some shard is not ready"}},
        summary="200 once every shard is recovered and reachable",
    )
    async def readyz(request: Request) -> Response:
        shards = [
            {key: entry[key] for key in ("shard", "state", "detail")}
            for entry in await shard_states(service_of(request))
        ]
        ready = all(shard["state"] == "ready" for shard in shards)
        headers = {} if ready else {"Retry-After": "1"}
        return json_response({"ready": ready, "shards": shards}, 200 if ready else 503, headers)


def add_operator_routes(app: FastAPI) -> None:
    @app.get(
        "/v1/shards",
        responses=COMMON_RESPONSES,
        summary="Every shard's state, LSN, queue depth and counts",
    )
    async def shards(request: Request, caller: Reader) -> Response:
        states = await shard_states(service_of(request))
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return json_response({"at": at, "shards": states}, headers=caller.headers)

    @app.get(
        "/v1/events/recent",
        responses=COMMON_RESPONSES,
        summary="The newest events of every reachable shard, newest first",
    )
    async def recent_events(
        request: Request,
        caller: Reader,
        limit: Annotated[int, Query(ge=1, le=RECENT_EVENTS_MAX)] = 50,
    ) -> Response:
        events, missing = await _recent(service_of(request), limit)
        body = {"events": events, "unavailable_shards": missing}
        return json_response(body, headers=caller.headers)

    @app.get("/console", include_in_schema=False)
    async def console() -> Response:
        return FileResponse(CONSOLE_DIR / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/console/{name}", include_in_schema=False)
    async def console_file(name: str) -> Response:
        media_type = CONSOLE_FILES.get(name)
        if media_type is None:
            raise not_found(f"the console has no file {name!r}")
        return FileResponse(CONSOLE_DIR / name, media_type=media_type)


async def _recent(service: Service, limit: int) -> tuple[list[dict[str, Any]], list[int]]:
    """The newest `limit` events over all shards; the shards that did not answer."""
    timeout_seconds = service.settings.call_timeout_seconds

    async def newest(shard_id: int, shard: Any) -> list[tuple[int, int, dict[str, Any]]]:
        # An empty needle matches every record: the shard's newest records, newest first.
        ref = shard.read_history.remote("", 2**62, 2**62, limit)
        _, _, records = await asyncio.wait_for(ref, timeout_seconds)
        found: list[tuple[int, int, dict[str, Any]]] = []
        for lsn, at_ms, text in records:
            events, _ = record_events(shard_id, lsn, at_ms, text)
            found.extend((at_ms, lsn, event) for event in reversed(events))
        return found

    shards = service.client.shards
    answers = await asyncio.gather(
        *(newest(i, shard) for i, shard in enumerate(shards)), return_exceptions=True
    )
    found: list[tuple[int, int, dict[str, Any]]] = []
    missing = []
    for shard_id, answer in enumerate(answers):
        if isinstance(answer, BaseException):
            missing.append(shard_id)
        else:
            found.extend(answer)
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [event for _, _, event in found[:limit]], missing
