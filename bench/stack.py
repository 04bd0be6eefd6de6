"""A private Ray instance running the shards and the HTTP app (rate limits off), a no-op app to
deploy beside it, and the calls that stock its SKUs before a load."""

import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import sku_name, start_ray
from harness.ports import free_port
from harness.serve import private_serve_files, wait_ready
from inventory_cli.main import FAST_INGRESS_ENV

ON_HAND = 1_000_000_000
NOOP_PREFIX = "/noop"


def post(url: str, key: str, body: object, timeout: float = 120.0) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def stock(url: str, key: str, skus: int) -> None:
    for start in range(0, skus, 5_000):
        ops = [
            {"op": "adjust", "sku": sku_name(i), "location": "L01", "delta": ON_HAND}
            | {"reason": "received"}
            for i in range(start, min(skus, start + 5_000))
        ]
        status, body = post(f"{url}/v1/batch", key, {"operations": ops})
        bad = [r for r in body["results"] if r["status"] != 200] if status == 200 else body
        if status != 200 or bad:
            raise RuntimeError(f"stocking failed ({status}): {str(bad)[:400]}")


def noop_deployment() -> Any:
    """A FastAPI ingress with one POST route, with the real deployment's actor options."""
    from fastapi import FastAPI  # noqa: PLC0415
    from ray import serve  # noqa: PLC0415

    from serve_app.deployment import DEPLOYMENT_OPTIONS  # noqa: PLC0415

    noop = FastAPI()

    @noop.post("/noop")
    async def answer() -> dict[str, str]:
        return {"status": "ok"}

    options = {
        "name": "noop",
        "ray_actor_options": DEPLOYMENT_OPTIONS["ray_actor_options"],
        "max_ongoing_requests": DEPLOYMENT_OPTIONS["max_ongoing_requests"],
        "max_queued_requests": DEPLOYMENT_OPTIONS["max_queued_requests"],
    }

    @serve.deployment(**options)
    @serve.ingress(noop)
    class Noop:
        pass

    return Noop


@dataclass
class ServeStack:
    """A private Ray instance running the shards and the HTTP app, and an admin key."""

    url: str
    key: str
    data_dir: Path
    namespace: str
    shards: int
    replicas: int
    calls_in_flight: int

    def settings(self, calls_in_flight: int, rate_limits: Any = None) -> Any:
        from serve_app.middleware.rate_limit import RateLimits  # noqa: PLC0415
        from serve_app.service import Settings  # noqa: PLC0415

        return Settings(
            data_dir=str(self.data_dir),
            shards=self.shards,
            namespace=self.namespace,
            calls_in_flight_per_shard=calls_in_flight,
            rate_limits=rate_limits or RateLimits.disabled(),
        )

    def redeploy(self, calls_in_flight: int, rate_limits: Any = None) -> None:
        """Deploy the app again: rate limits disabled unless `rate_limits` are given."""
        from serve_app.deployment import deploy  # noqa: PLC0415

        deploy(self.settings(calls_in_flight, rate_limits), num_replicas=self.replicas)
        self.calls_in_flight = calls_in_flight
        wait_ready(self.url)

    def redeploy_with(self, rate_limits: Any) -> None:
        self.redeploy(self.calls_in_flight, rate_limits)


@contextmanager
def serve_stack(shards: int, replicas: int, default_proxy: bool) -> Iterator[ServeStack]:
    """Start Ray, Serve (the fast ingress unless `default_proxy`) and the app with rate limits
    disabled, so the figures are of the service, not the limiter; shut it all down after."""
    # Serve reads these when it is imported and when its actors start: set them first.
    for name, value in FAST_INGRESS_ENV.items():
        if default_proxy and name != "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S":
            os.environ.pop(name, None)
        else:
            os.environ.setdefault(name, value)
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    haproxy = private_serve_files()

    import ray  # noqa: PLC0415
    from ray import serve  # noqa: PLC0415

    from serve_app.keys import KeyStore  # noqa: PLC0415
    from serve_app.service import Settings  # noqa: PLC0415

    data_dir = tmp / "data"
    data_dir.mkdir()
    first = KeyStore.open(data_dir).initialize()
    assert first is not None
    namespace = f"bench-http-{uuid.uuid4().hex[:8]}"
    url = ""
    for attempt in range(3):
        # A free port can be taken by someone else before HAProxy binds it: try another.
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        start_ray(namespace)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            break
        except Exception as error:
            ray.shutdown()
            if attempt == 2:
                raise
            print(f"Serve did not start on port {port} ({str(error)[-200:]}); retrying")
    try:
        stack = ServeStack(url, first[1], data_dir, namespace, shards, replicas, 0)
        stack.redeploy(Settings().calls_in_flight_per_shard)
        yield stack
    finally:
        ray.shutdown()  # Serve, its apps and the shards go with this private instance
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(haproxy, ignore_errors=True)
