"""The Ray Serve deployment: the FastAPI app as an autoscaling ingress, one Service per replica.

`build_app` is what `serve deploy serve_config.yaml` imports; `inventory up` calls `deploy`.
"""

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from ray import serve
from ray.serve import Application

from inventory_actors import json_logging
from inventory_actors.ray_metrics import make_metric
from serve_app.app import create_app
from serve_app.operator_routes import ShardWatch
from serve_app.rate_limit import RateLimits, RoleLimit
from serve_app.service import Service, Settings, current_service, install_service

APP_NAME = "inventory"
DEPLOYMENT_NAME = "inventory-api"

# Explicit Serve options. The defaults hurt here: max_ongoing_requests is 5, a replica
# reserves a whole CPU, and autoscaling waits 30 s before adding a replica.
DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "name": DEPLOYMENT_NAME,
    # Replicas spend most of their time waiting on shards; let several share a core.
    "ray_actor_options": {"num_cpus": 0.25},
    # Requests a replica works on at once: enough for coalescing to form big shard calls.
    "max_ongoing_requests": 256,
    # Beyond this many waiting at the proxy, Serve answers 503 at once instead of queueing.
    "max_queued_requests": 2_048,
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
    return Settings(**values)


def _rate_limits(raw: dict[str, Any]) -> RateLimits:
    values: dict[str, Any] = {}
    for name, value in raw.items():
        values[name] = RoleLimit(**value) if isinstance(value, dict) else value
    return RateLimits(**values)


def build_app(args: dict[str, Any]) -> Application:
    """The application `serve deploy` / `serve run` build from `serve_config.yaml`."""
    settings = settings_from(args)
    return InventoryApi.bind(settings)  # type: ignore[attr-defined,no-any-return]


def deploy(
    settings: Settings,
    *,
    route_prefix: str = "/",
    num_replicas: int | None = None,
    blocking: bool = False,
) -> None:
    """Run the app on the connected Ray cluster. `num_replicas` fixes the replica count
    (no autoscaling), as tests want."""
    deployment = InventoryApi
    if num_replicas is not None:
        deployment = deployment.options(  # type: ignore[attr-defined]
            num_replicas=num_replicas, autoscaling_config=None
        )
    serve.run(
        deployment.bind(settings),  # type: ignore[attr-defined]
        name=APP_NAME,
        route_prefix=route_prefix,
        blocking=blocking,
    )


def describe(settings: Settings) -> dict[str, Any]:
    return asdict(settings)
