"""Every metric the service exports, in one catalogue: the code, the docs, the Grafana dashboard
and the Prometheus rules all name these. As scraped, Ray prefixes each name with `ray_`, adds
`_total` to counters and labels every series with its worker: sum over `shard` (or `route`),
not by worker (docs/operations.md, Metrics)."""

from dataclasses import dataclass
from typing import Literal

MetricKind = Literal["counter", "gauge", "histogram"]

# Commands per group commit: one command alone up to a full batch (10,000 by default).
BATCH_BOUNDARIES = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 5_000.0)


def steps_1_2_5(low: float, high: float) -> tuple[float, ...]:
    """Histogram boundaries 1, 2.5, 5 per decade from `low` to `high` (both powers of ten)."""
    bounds: list[float] = []
    decade = low
    while decade < high * 0.999:
        bounds += [decade, round(decade * 2.5, 12), round(decade * 5, 12)]
        decade = round(decade * 10, 12)
    return (*bounds, high)


# Seconds: an fsync on a fast disk (about 0.15 ms) up to a stalled one.
COMMIT_SECONDS_BOUNDARIES = steps_1_2_5(0.0001, 1.0)
# Seconds: a replica answering from memory up to a request waiting out a shard's timeout.
REQUEST_SECONDS_BOUNDARIES = steps_1_2_5(0.001, 10.0)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: MetricKind
    description: str
    tags: tuple[str, ...]
    boundaries: tuple[float, ...] = ()

    @property
    def exported_name(self) -> str:
        """The name Prometheus scrapes (a histogram adds `_bucket`, `_sum`, `_count`)."""
        suffix = "_total" if self.kind == "counter" else ""
        return f"ray_{self.name}{suffix}"


SHARD_COMMANDS = MetricSpec(
    "inventory_shard_commands",
    "counter",
    "Commands a shard answered, by command and outcome (ok, replayed, or the error's kind).",
    ("shard", "command", "outcome"),
)
SHARD_BATCH_COMMANDS = MetricSpec(
    "inventory_shard_batch_commands",
    "histogram",
    "Commands per group commit (one transaction, one fsync).",
    ("shard",),
    BATCH_BOUNDARIES,
)
SHARD_COMMIT_SECONDS = MetricSpec(
    "inventory_shard_commit_seconds",
    "histogram",
    "Time to write one batch to the log: the transaction and its fsync.",
    ("shard",),
    COMMIT_SECONDS_BOUNDARIES,
)
SHARD_QUEUE_DEPTH = MetricSpec(
    "inventory_shard_queue_depth",
    "gauge",
    "Commands waiting for the shard's next batch.",
    ("shard",),
)
SHARD_ACTIVE_HOLDS = MetricSpec(
    "inventory_shard_active_holds",
    "gauge",
    "Reservations holding stock now.",
    ("shard",),
)
SHARD_EXPIRED_HOLDS = MetricSpec(
    "inventory_shard_expired_holds",
    "counter",
    "Reservations released because their time to live ran out.",
    ("shard",),
)
SHARD_RECOVERY_SECONDS = MetricSpec(
    "inventory_shard_recovery_seconds",
    "gauge",
    "How long the shard's last recovery from its file took.",
    ("shard",),
)
SHARD_LAST_LSN = MetricSpec(
    "inventory_shard_last_lsn",
    "gauge",
    "The shard's last durable log sequence number.",
    ("shard",),
)
SHARD_LOW_STOCK = MetricSpec(
    "inventory_shard_low_stock_locations",
    "gauge",
    "SKU-locations whose available stock is below their low-stock threshold.",
    ("shard",),
)
SHARD_OVERLOADED = MetricSpec(
    "inventory_shard_overloaded",
    "counter",
    "Commands refused because the shard's queue was full (backpressure, answered 503).",
    ("shard",),
)
SHARD_STORAGE_FAILURES = MetricSpec(
    "inventory_shard_storage_failures",
    "counter",
    "Batches whose log write failed (each fails its commands and makes the shard recover).",
    ("shard",),
)
SHARD_SETTLE_REFUSED = MetricSpec(
    "inventory_shard_settle_refused",
    "counter",
    "Decisions of this home shard that another shard refused (a broken protocol: that shard's "
    "part of the reservation may stay held).",
    ("shard",),
)
SHARD_MISROUTED = MetricSpec(
    "inventory_shard_misrouted",
    "counter",
    "Commands refused because another shard owns their SKU or reservation (a routing fault, "
    "answered 500 shard-misrouted; nothing was applied).",
    ("shard",),
)
SHARD_UP = MetricSpec(
    "inventory_shard_up",
    "gauge",
    "1 while an API replica finds the shard recovered and answering, else 0.",
    ("shard",),
)
HTTP_REQUESTS = MetricSpec(
    "inventory_http_requests",
    "counter",
    "HTTP requests answered, by route template, method and status.",
    ("route", "method", "status"),
)
HTTP_REQUEST_SECONDS = MetricSpec(
    "inventory_http_request_seconds",
    "histogram",
    "Time from a request reaching the replica to its answer, by route template and method.",
    ("route", "method"),
    REQUEST_SECONDS_BOUNDARIES,
)
HTTP_REJECTIONS = MetricSpec(
    "inventory_http_rejections",
    "counter",
    "Requests turned away before any change: rate-limited (429), overloaded or "
    "shard-unavailable (503), payload-too-large (413).",
    ("reason",),
)

SHARD_METRICS = (
    SHARD_COMMANDS,
    SHARD_BATCH_COMMANDS,
    SHARD_COMMIT_SECONDS,
    SHARD_QUEUE_DEPTH,
    SHARD_ACTIVE_HOLDS,
    SHARD_EXPIRED_HOLDS,
    SHARD_RECOVERY_SECONDS,
    SHARD_LAST_LSN,
    SHARD_LOW_STOCK,
    SHARD_OVERLOADED,
    SHARD_STORAGE_FAILURES,
    SHARD_SETTLE_REFUSED,
    SHARD_MISROUTED,
)
API_METRICS = (SHARD_UP, HTTP_REQUESTS, HTTP_REQUEST_SECONDS, HTTP_REJECTIONS)
ALL_METRICS = SHARD_METRICS + API_METRICS


def exported_series(spec: MetricSpec) -> tuple[str, ...]:
    """Every series name Prometheus shows for the metric."""
    base = spec.exported_name
    if spec.kind == "histogram":
        return (f"{base}_bucket", f"{base}_sum", f"{base}_count")
    return (base,)
