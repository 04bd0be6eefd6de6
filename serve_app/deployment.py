"""The Ray Serve deployment: the FastAPI app as an autoscaling ingress, one Service per replica.

`build_app` is what `serve deploy serve_config.yaml` imports; `inventory up` calls `deploy`.
"""

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any, cast

from ray import serve
from ray.serve import Application
from starlette.middleware import Middleware

from inventory_actors.observability import json_logging
from inventory_actors.observability.ray_metrics import make_metric
from serve_app.app import create_app
from serve_app.middleware.admission import AdmissionGate, AdmissionLimits
from serve_app.middleware.rate_limit import RateLimits, RoleLimit
from serve_app.middleware.request_scope import Observability
from serve_app.routes.operator import ShardWatch
from serve_app.service import Service, Settings, current_service, install_service

APP_NAME = "inventory"
DEPLOYMENT_NAME = "inventory-api"

# Requests Serve lets into a replica beyond what the gate runs and queues: those on their way
# to the gate (on a saturated replica, thousands: the event loop's backlog), its answers while
# they are sent, the health routes and event streams. As many as the HAProxy ingress holds
# connections (RAY_SERVE_HAPROXY_MAXCONN, 4,096), so that each is answered by the gate.
SERVE_ONGOING_HEADROOM = 4_096
# Serve's queue in front of the app, past `max_ongoing_requests`; then Serve answers a
# plain-text 503 itself. Only a backstop, but not a small one: with the HAProxy ingress
# (Serve 2.60) a request counts as queued from its arrival until its task first runs, so a
# burst that arrives within one turn of the replica's event loop (250 requests at once, say)
# counts whole, however many slots are free.
SERVE_QUEUED_MAX = 4_096


def serve_limits(admission: AdmissionLimits) -> dict[str, Any]:
    """Serve's per-replica bounds for a gate with `admission`: wide enough that every request
    reaches the gate at once (which answers in problem+json, with Retry-After); past them Serve
    queues a little, then answers 503 with Retry-After itself."""
    return {
        "max_ongoing_requests": admission.running_max
        + admission.queued_max
        + SERVE_ONGOING_HEADROOM,
        "max_queued_requests": SERVE_QUEUED_MAX,
        "backpressure_config": {"status_code": 503, "retry_after_s": 1.0},
    }


# Explicit Serve options. The defaults hurt here: max_ongoing_requests is 5, a replica
# reserves a whole CPU, and autoscaling waits 30 s before adding a replica.
DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "name": DEPLOYMENT_NAME,
    # Replicas spend most of their time waiting on shards; let several share a core.
    "ray_actor_options": {"num_cpus": 0.25},
    # Requests reach the admission gate at once; it decides what runs, waits or is shed.
    **serve_limits(AdmissionLimits()),
    "autoscaling_config": {
        "min_replicas": 1,
        "initial_replicas": 1,
        "max_replicas": 4,
        "target_ongoing_requests": 64,
        "upscale_delay_s": 3.0,
        "downscale_delay_s": 60.0,
        "metrics_interval_s": 2.0,
        "look_back_period_s": 6.0,
    },
    "health_check_period_s": 5.0,
    "graceful_shutdown_timeout_s": 10.0,
}

app = create_app()
# The admission gate runs first, inside the observability middleware (so its answers are
# counted and logged like every other), before anything reads the body.
app.user_middleware.insert(
    1 + next(i for i, m in enumerate(app.user_middleware) if cast(object, m.cls) is Observability),
    Middleware(AdmissionGate, service_of=current_service),
)


@serve.deployment(**DEPLOYMENT_OPTIONS)
@serve.ingress(app)
class InventoryApi:
    def __init__(self, settings: Settings) -> None:
        json_logging.configure("api")
        install_service(Service.start(settings))
        self._shard_watch = ShardWatch(make_metric)

    async def check_health(self) -> None:
        """Serve restarts a replica whose check fails: it fails when the replica has no
        service. A shard that is down does not fail it (other replicas could not do better);
        the check records what it finds of the shards as `inventory_shard_up`."""
        await self._shard_watch.refresh(current_service())


def settings_from(args: dict[str, Any]) -> Settings:
    """Settings from a serve config's `args` (unknown names are refused, not ignored)."""
    known = {f.name for f in fields(Settings)}
    unknown = set(args) - known
    if unknown:
        raise ValueError(f"unknown settings: {sorted(unknown)}; known: {sorted(known)}")
    values = dict(args)
    if not Path(str(values.get("data_dir", ""))).is_absolute():
        raise ValueError("data_dir must be an absolute path: replicas run in another directory")
    if isinstance(values.get("rate_limits"), dict):
        values["rate_limits"] = _rate_limits(values["rate_limits"])
    if isinstance(values.get("admission"), dict):
        values["admission"] = AdmissionLimits(**values["admission"])
    return Settings(**values)


def _rate_limits(raw: dict[str, Any]) -> RateLimits:
    values: dict[str, Any] = {}
    for name, value in raw.items():
        values[name] = RoleLimit(**value) if isinstance(value, dict) else value
    return RateLimits(**values)


def deployment_for(settings: Settings, **options: Any) -> Any:
    """The deployment with Serve's bounds for `settings`' admission limits, and `options`."""
    return InventoryApi.options(**serve_limits(settings.admission), **options)  # type: ignore[attr-defined]


def build_app(args: dict[str, Any]) -> Application:
    """The application `serve deploy` / `serve run` build from `serve_config.yaml`."""
    settings = settings_from(args)
    return deployment_for(settings).bind(settings)  # type: ignore[no-any-return]


def deploy(
    settings: Settings,
    *,
    route_prefix: str = "/",
    num_replicas: int | None = None,
    blocking: bool = False,
) -> None:
    """Run the app on the connected Ray cluster. `num_replicas` fixes the replica count
    (no autoscaling), as tests want."""
    fixed = (
        {} if num_replicas is None else {"num_replicas": num_replicas, "autoscaling_config": None}
    )
    deployment = deployment_for(settings, **fixed)
    serve.run(
        deployment.bind(settings),
        name=APP_NAME,
        route_prefix=route_prefix,
        blocking=blocking,
    )


def describe(settings: Settings) -> dict[str, Any]:
    return asdict(settings)
