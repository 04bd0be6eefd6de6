"""The real app over real HTTP: one Serve deployment for the whole session, on a free local port,
in front of two shards in their own namespace and data directory."""

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from ray import serve

from harness.ports import free_port
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.shard.partitioning import PartitionMap
from serve_app.deployment import deploy
from serve_app.keys import KeyStore, Role
from serve_app.middleware.rate_limit import RateLimits, RoleLimit
from serve_app.service import Settings

SHARDS = 2
READY_TIMEOUT_SECONDS = 120.0
PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class HttpApp:
    """What tests need to reach the app: its address, keys of every role, and its shards."""

    base_url: str
    admin_key: str
    writer_key: str
    reader_key: str
    data_dir: Path
    namespace: str
    keys: KeyStore
    partition: PartitionMap

    def new_key(self, role: Role) -> tuple[str, str]:
        """(key id, full key) of a fresh key; the app sees it within about a second."""
        record, presented = self.keys.create(role)
        return record.key_id, presented

    def sku(self, shard: int | None = None, prefix: str = "T") -> str:
        """A SKU no other test uses, owned by `shard` if given."""
        while True:
            sku = f"{prefix}-{uuid.uuid4().hex[:16]}"
            if shard is None or self.partition.owner(sku=sku) == shard:
                return sku

    def shard_actor(self, shard: int) -> Any:
        return ray.get_actor(f"inventory-shard-{shard}", namespace=self.namespace)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _wait_ready(base_url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(f"{base_url}/readyz", timeout=5.0)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.HTTPError as error:
            last = repr(error)
        time.sleep(0.2)
    pytest.fail(f"the app was not ready within {READY_TIMEOUT_SECONDS} s: {last}")


@pytest.fixture(scope="session")
def http_app(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpApp]:
    data_dir = tmp_path_factory.mktemp("http-app")
    namespace = f"http-{uuid.uuid4().hex[:12]}"
    store = KeyStore.open(data_dir)
    created = store.initialize()
    assert created is not None
    admin_key = created[1]
    writer_key = store.create(Role.WRITER)[1]
    reader_key = store.create(Role.READER)[1]
    # The shards first, from here, so teardown can stop them whatever happens to Serve.
    shards = InventoryClient.connect(data_dir, shard_count=SHARDS, namespace=namespace)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        settings = Settings(
            data_dir=str(data_dir),
            shards=SHARDS,
            namespace=namespace,
            access_log=True,
            rate_limits=RateLimits(
                reader=RoleLimit(100, 100),
                writer=RoleLimit(5000, 5000),
                admin=RoleLimit(5000, 5000),
            ),
        )
        deploy(settings, num_replicas=1)
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(base_url)
        yield HttpApp(
            base_url,
            admin_key,
            writer_key,
            reader_key,
            data_dir,
            namespace,
            store,
            shards.partition,
        )
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]
        shards.shutdown()


@pytest.fixture
def http(http_app: HttpApp) -> Iterator[httpx.Client]:
    """A client of the app without credentials; tests add the key they mean."""
    with httpx.Client(base_url=http_app.base_url, timeout=30.0) as client:
        yield client


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """The answer is the contract's problem `slug` with `status`; returns its body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["type"] == f"/problems/{slug}", body
    assert body["status"] == status, body
    assert isinstance(body["title"], str) and body["title"], body
    assert isinstance(body["detail"], str) and body["detail"], body
    return body


def stock(
    http: httpx.Client, app: HttpApp, sku: str, on_hand: int, location: str = "berlin"
) -> None:
    """Put `on_hand` units of `sku` at `location` (a new SKU), through the API."""
    answer = http.put(
        f"/v1/skus/{sku}/locations/{location}",
        json={"on_hand": on_hand, "reason": "cycle_count"},
        headers=bearer(app.admin_key),
    )
    assert answer.status_code == 200, answer.text


def sku_view(http: httpx.Client, app: HttpApp, sku: str) -> dict[str, Any]:
    answer = http.get(f"/v1/skus/{sku}", headers=bearer(app.admin_key))
    assert answer.status_code == 200, answer.text
    view: dict[str, Any] = answer.json()
    return view
