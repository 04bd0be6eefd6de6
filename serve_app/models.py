"""Pydantic models of the HTTP bodies that are not engine commands: batch operations, queries,
and the answers, so `/openapi.json` says exactly what the app does."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from inventory_actors.cluster.boundary import (
    Delta,
    HoldId,
    ItemId,
    OnHand,
    Reason,
    Reference,
    ReservationLineBody,
    TtlSeconds,
)
from inventory_actors.domain import limits

BATCH_OPERATIONS_MAX = 10_000
QUERY_SKUS_MAX = 1_000

# 1 to 255 printable ASCII characters (the contract), wherever the key is checked.
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]{1,255}$"
IdempotencyKey = Annotated[str, StringConstraints(pattern=IDEMPOTENCY_KEY_PATTERN)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReserveOp(_Body):
    op: Literal["reserve"]
    lines: Annotated[
        list[ReservationLineBody], Field(min_length=1, max_length=limits.LINES_PER_HOLD_MAX)
    ]
    ttl_seconds: TtlSeconds = 900
    reference: Reference | None = None
    idempotency_key: IdempotencyKey | None = None


class CommitOp(_Body):
    op: Literal["commit"]
    reservation_id: HoldId
    idempotency_key: IdempotencyKey | None = None


class ReleaseOp(_Body):
    op: Literal["release"]
    reservation_id: HoldId
    idempotency_key: IdempotencyKey | None = None


class AdjustOp(_Body):
    op: Literal["adjust"]
    sku: ItemId
    location: ItemId
    delta: Delta
    reason: Reason
    reference: Reference | None = None
    idempotency_key: IdempotencyKey | None = None


class SetOp(_Body):
    op: Literal["set"]
    sku: ItemId
    location: ItemId
    on_hand: OnHand
    reason: Reason = "cycle_count"
    reference: Reference | None = None
    idempotency_key: IdempotencyKey | None = None


Operation = Annotated[
    ReserveOp | CommitOp | ReleaseOp | AdjustOp | SetOp, Field(discriminator="op")
]


class BatchBody(_Body):
    operations: Annotated[list[Operation], Field(min_length=1, max_length=BATCH_OPERATIONS_MAX)]


class QueryBody(_Body):
    skus: Annotated[list[ItemId], Field(min_length=1, max_length=QUERY_SKUS_MAX)]


# -- answers (documentation only: routes write their JSON directly, for speed) --------------


class Totals(BaseModel):
    on_hand: int = Field(ge=0)
    reserved: int = Field(ge=0)
    available: int = Field(ge=0)


class LocationOut(Totals):
    location: str


class SkuOut(BaseModel):
    sku: str
    version: int = Field(ge=0)
    totals: Totals
    locations: list[LocationOut]


class QueryOut(BaseModel):
    items: list[SkuOut]
    missing: list[str]


class ReservationLineOut(BaseModel):
    sku: str
    location: str
    quantity: int = Field(gt=0)


class ReservationOut(BaseModel):
    reservation_id: str
    status: Literal["pending", "active", "committed", "released", "expired"]
    expires_at: str
    reference: str | None
    created_at: str
    lines: list[ReservationLineOut]


class ProblemOut(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str


class BatchResult(BaseModel):
    status: int
    body: dict[str, Any]


class BatchOut(BaseModel):
    results: list[BatchResult]


class ShardHealth(BaseModel):
    shard: int
    state: str
    detail: str | None = None


class ReadyOut(BaseModel):
    ready: bool
    shards: list[ShardHealth]


class ThresholdOut(BaseModel):
    sku: str
    location: str
    low_stock_below: int | None = Field(ge=0)
    low: bool


class AlertOut(BaseModel):
    sku: str
    location: str
    available: int = Field(ge=0)
    low_stock_below: int = Field(ge=0)


class AlertsOut(BaseModel):
    alerts: list[AlertOut]
    unavailable_shards: list[int]
