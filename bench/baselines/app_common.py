"""What the baselines share: the request models (a subset of the service's API), the answers,
and the routes, over a small Store each backend implements."""

import uuid
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI
from pydantic import BaseModel, Field
from starlette.responses import JSONResponse, Response

# (sku, quantity) of each line of one reservation.
Lines = Sequence[tuple[str, int]]
BATCH_OPERATIONS_MAX = 10_000


class Line(BaseModel):
    sku: str = Field(min_length=1, max_length=128)
    quantity: int = Field(gt=0, le=1_000_000_000)


class ReservationBody(BaseModel):
    lines: list[Line] = Field(min_length=1, max_length=100)
    ttl_seconds: int = 900


class ReserveOperation(BaseModel):
    op: str = "reserve"
    lines: list[Line] = Field(min_length=1, max_length=100)
    ttl_seconds: int = 900


class BatchBody(BaseModel):
    operations: list[ReserveOperation] = Field(min_length=1, max_length=BATCH_OPERATIONS_MAX)


class StockBody(BaseModel):
    skus: list[str] = Field(min_length=1, max_length=1_000_000)
    available: int = Field(ge=0)


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def reserve(self, lines: Lines) -> bool:
        """Take every line or none, durably; False when some line is short."""
        ...

    async def reserve_batch(self, reservations: Sequence[Lines]) -> list[bool]:
        """Each reservation on its own (all of its lines or none), the batch in one commit."""
        ...

    async def set_stock(self, skus: Sequence[str], available: int) -> None: ...

    async def get(self, sku: str) -> int | None: ...


def _lines(lines: list[Line]) -> list[tuple[str, int]]:
    """Lines of the same SKU summed (as the service does), so each SKU is checked once for all
    that the reservation takes of it."""
    totals: dict[str, int] = {}
    for line in lines:
        totals[line.sku] = totals.get(line.sku, 0) + line.quantity
    return list(totals.items())


SHORT = {
    "type": "/problems/insufficient-stock",
    "title": "Insufficient stock",
    "status": 409,
    "detail": "some line is short",
}


def create_app(make_store: Callable[[], Store]) -> FastAPI:
    store = make_store()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await store.open()
        yield
        await store.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/noop")
    async def noop() -> dict[str, str]:
        return {}

    @app.post("/v1/reservations")
    async def reserve(body: ReservationBody) -> Response:
        if await store.reserve(_lines(body.lines)):
            answer = {"reservation_id": f"r_{uuid.uuid4().hex}", "status": "active"}
            return JSONResponse(answer, 201)
        return JSONResponse(SHORT, 409, media_type="application/problem+json")

    @app.post("/v1/batch")
    async def batch(body: BatchBody) -> Response:
        taken = await store.reserve_batch([_lines(op.lines) for op in body.operations])
        results = [{"status": 201 if ok else 409} for ok in taken]
        return JSONResponse({"results": results})

    @app.put("/admin/stock")
    async def set_stock(body: StockBody) -> dict[str, int]:
        await store.set_stock(body.skus, body.available)
        return {"skus": len(body.skus)}

    @app.get("/admin/stock/{sku}")
    async def get_stock(sku: str) -> Response:
        available = await store.get(sku)
        if available is None:
            return JSONResponse({"detail": "unknown SKU"}, 404)
        return JSONResponse({"sku": sku, "available": available})

    return app
