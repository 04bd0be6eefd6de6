"""The benchmark's baselines keep the promise they are measured on: never oversell. Each runs as
the suite runs it (uvicorn, over PostgreSQL and Redis that `bench/setup.sh` starts, or SQLite),
and takes concurrent reservations over real HTTP."""

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
APPS = {
    "postgres": "bench.baselines.postgres_app:app",
    "sqlite": "bench.baselines.sqlite_app:app",
    "redis": "bench.baselines.redis_app:app",
}
START_TIMEOUT_SECONDS = 60.0


def _servers_available() -> bool:
    has_postgres = any(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    return has_postgres and shutil.which("redis-server") is not None


@pytest.fixture(scope="module")
def baseline_urls() -> Iterator[dict[str, str]]:
    if not _servers_available() and os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL and Redis must be installable in CI (bench/setup.sh)")
        pytest.skip("needs PostgreSQL and Redis (bench/setup.sh installs them as root)")
    # The postgres user must reach its directory: every level readable by others.
    state = Path(tempfile.mkdtemp(prefix="baselines-"))
    state.chmod(0o755)
    setup = ROOT / "bench" / "setup.sh"
    started = subprocess.run(
        ["bash", str(setup), "start", str(state)], capture_output=True, text=True, check=False
    )
    assert started.returncode == 0, started.stdout + started.stderr
    pairs = (line.split("=", 1) for line in (state / "env").read_text().splitlines())
    env = {**os.environ, **dict(pairs), "SQLITE_PATH": str(state / "stock.db")}
    processes, urls = [], {}
    try:
        for name, app in APPS.items():
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", app, "--port", str(port)]
            command += ["--host", "127.0.0.1", "--log-level", "warning"]
            processes.append(subprocess.Popen(command, env=env, cwd=ROOT))
            urls[name] = f"http://127.0.0.1:{port}"
        for url in urls.values():
            _wait(url)
        yield urls
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        subprocess.run(["bash", str(setup), "stop", str(state)], check=False)
        shutil.rmtree(state, ignore_errors=True)


def _wait(url: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            if httpx.post(f"{url}/noop", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} did not start")


def _post_all(url: str, requests: list[tuple[str, object]]) -> list[int]:
    """POST every (path, body) at once, over at most 50 connections; the statuses in order."""

    async def send() -> list[int]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(base_url=url, timeout=60.0, limits=limits) as client:
            answers = await asyncio.gather(
                *(client.post(path, json=body) for path, body in requests)
            )
        return [answer.status_code for answer in answers]

    return asyncio.run(send())


def _new_skus(url: str, count: int, available: int) -> list[str]:
    skus = [f"b-{uuid.uuid4().hex[:12]}" for _ in range(count)]
    answer = httpx.put(f"{url}/admin/stock", json={"skus": skus, "available": available})
    assert answer.status_code == 200, answer.text
    return skus


def _available(url: str, sku: str) -> int:
    answer = httpx.get(f"{url}/admin/stock/{sku}")
    assert answer.status_code == 200, answer.text
    available: int = answer.json()["available"]
    return available


@pytest.mark.parametrize("name", list(APPS))
def test_a_reservation_takes_all_its_lines_or_none(
    baseline_urls: dict[str, str], name: str
) -> None:
    url = baseline_urls[name]
    plenty, scarce = _new_skus(url, 2, 5)
    lines = [{"sku": plenty, "quantity": 3}, {"sku": scarce, "quantity": 3}]
    assert httpx.post(f"{url}/v1/reservations", json={"lines": lines}).status_code == 201
    short = httpx.post(f"{url}/v1/reservations", json={"lines": lines})
    assert short.status_code == 409
    assert short.json()["type"] == "/problems/insufficient-stock"
    assert (_available(url, plenty), _available(url, scarce)) == (2, 2)


@pytest.mark.parametrize("name", list(APPS))
def test_a_batch_takes_exactly_what_there_is(baseline_urls: dict[str, str], name: str) -> None:
    url = baseline_urls[name]
    (sku,) = _new_skus(url, 1, 600)
    operations = [{"op": "reserve", "lines": [{"sku": sku, "quantity": 1}]}] * 1_000
    answer = httpx.post(f"{url}/v1/batch", json={"operations": operations}, timeout=60.0)
    assert answer.status_code == 200, answer.text
    statuses = [result["status"] for result in answer.json()["results"]]
    assert (statuses.count(201), statuses.count(409)) == (600, 400)
    assert _available(url, sku) == 0


@pytest.mark.parametrize("name", list(APPS))
def test_concurrent_reservations_never_oversell(baseline_urls: dict[str, str], name: str) -> None:
    url = baseline_urls[name]
    (sku,) = _new_skus(url, 1, 150)
    body = {"lines": [{"sku": sku, "quantity": 1}]}
    statuses = _post_all(url, [("/v1/reservations", body)] * 200)
    assert (statuses.count(201), statuses.count(409)) == (150, 50)
    assert _available(url, sku) == 0


@pytest.mark.parametrize("name", list(APPS))
def test_lines_of_one_sku_are_checked_together(baseline_urls: dict[str, str], name: str) -> None:
    url = baseline_urls[name]
    (sku,) = _new_skus(url, 1, 1_000)
    lines = [{"sku": sku, "quantity": 600}, {"sku": sku, "quantity": 600}]
    assert httpx.post(f"{url}/v1/reservations", json={"lines": lines}).status_code == 409
    assert _available(url, sku) == 1_000


@pytest.mark.parametrize("name", list(APPS))
def test_crossing_carts_and_batches_do_not_deadlock(
    baseline_urls: dict[str, str], name: str
) -> None:
    url = baseline_urls[name]
    first, second = _new_skus(url, 2, 1_000_000)
    forward = {"lines": [{"sku": first, "quantity": 1}, {"sku": second, "quantity": 1}]}
    backward = {"lines": forward["lines"][::-1]}
    batch = {"operations": [{"op": "reserve", **body} for body in (forward, backward) * 50]}
    requests = [("/v1/reservations", forward)] * 100 + [("/v1/reservations", backward)] * 100
    statuses = _post_all(url, [*requests, *[("/v1/batch", batch)] * 10])
    assert statuses == [201] * 200 + [200] * 10
    taken = 200 + 10 * 100
    assert (_available(url, first), _available(url, second)) == (1_000_000 - taken,) * 2
