"""Shared fixtures: one local Ray instance per test session; shards per test, in their own
namespace and data directory, killed at teardown."""

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import ray

from harness.etcd import LocalEtcd
from harness.ports import free_port
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.shard.config import ShardConfig
from inventory_cli.main import FAST_INGRESS_ENV

T = TypeVar("T")


# The fast Serve ingress, as `make run` sets it. Serve reads these when it starts, so they must be
# in the environment before Ray starts; set here, at import time, for the whole session.
for _variable, _value in FAST_INGRESS_ENV.items():
    os.environ.setdefault(_variable, _value)
# A replica behind HAProxy stays up this long when stopped, so load balancers can deregister it
# (30 s by default); nothing balances tests, and the wait would only slow their teardown.
os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
# HAProxy's stats and metrics listeners and Serve's fallback proxy bind fixed ports on all
# addresses; another Serve on this machine (a parallel test run) would make ours fail to start.
for _variable in (
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
):
    os.environ.setdefault(_variable, str(free_port()))
# Workers hand their metrics to the node's exporter every second instead of every ten, so tests
# that scrape it wait less.
os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")

ClientFactory = Callable[..., InventoryClient]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("INVENTORY_SLOW_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="long run: set INVENTORY_SLOW_TESTS=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        namespace="inventory-tests",
        _node_ip_address="127.0.0.1",
        # Ray's Prometheus endpoint (`ray.nodes()[0]["MetricsExportPort"]`), scraped by tests.
        _metrics_export_port=free_port(),
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEtcd]:
    """One local etcd for the session (installed with apt-get if missing), stopped at its end;
    tests share it, so each keeps to keys of its own (a unique prefix)."""
    with LocalEtcd.start(tmp_path_factory.mktemp("etcd")) as server:
        yield server


@pytest.fixture
def make_client(ray_session: None, tmp_path: Path) -> Iterator[ClientFactory]:
    """Start shards for a fresh data directory; every client made is shut down afterwards."""
    made: list[InventoryClient] = []

    def make(
        shard_count: int = 1,
        config: ShardConfig | None = None,
        data_dir: Path | None = None,
        namespace: str | None = None,
        call_timeout_seconds: float = 30.0,
    ) -> InventoryClient:
        client = InventoryClient.connect(
            data_dir or tmp_path / "data",
            shard_count=shard_count,
            namespace=namespace or f"test-{uuid.uuid4().hex[:12]}",
            config=config,
            call_timeout_seconds=call_timeout_seconds,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.shutdown()


def wait_for(condition: Callable[[], T | None], timeout_seconds: float, what: str) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        try:
            value = condition()
        except Exception:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_seconds} s waiting for {what}")
        time.sleep(0.05)


async def poll(condition: Callable[[], T | None], what: str, timeout_seconds: float = 5.0) -> T:
    """`wait_for` for tests on an event loop: yields to the loop between tries."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
