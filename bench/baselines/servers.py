"""The baselines as the suite runs them: PostgreSQL and Redis started by `bench/setup.sh`, one
uvicorn app per baseline on a free port, each stocked with the suite's SKUs."""

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.common import sku_name
from bench.stack import ON_HAND
from harness.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "bench" / "setup.sh"
BASELINES = ("postgres", "sqlite", "redis")
BASELINE_APPS = {
    "postgres": "bench.baselines.postgres_app:app",
    "sqlite": "bench.baselines.sqlite_app:app",
    "redis": "bench.baselines.redis_app:app",
}


@contextlib.contextmanager
def baselines(state_dir: Path, skus: int) -> Iterator[dict[str, str]]:
    """PostgreSQL and Redis started by `bench/setup.sh`, a uvicorn app per baseline, each
    stocked with the same SKUs; stopped afterwards, whatever happens."""
    subprocess.run(["bash", str(SETUP), "start", str(state_dir)], check=True, timeout=900)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        env = {**os.environ, **_read_env(state_dir / "env")}
        env["SQLITE_PATH"] = str(state_dir / "sqlite" / "stock.db")
        (state_dir / "sqlite").mkdir(exist_ok=True)
        urls = {}
        for name in BASELINES:
            port = free_port()
            command = [sys.executable, "-m", "uvicorn", BASELINE_APPS[name]]
            command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
            command += ["--log-level", "warning"]
            processes.append(subprocess.Popen(command, env=env, cwd=ROOT))
            urls[name] = f"http://127.0.0.1:{port}"
        for name, url in urls.items():
            _wait_http(f"{url}/noop", name)
            _stock_baseline(url, skus)
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["bash", str(SETUP), "stop", str(state_dir)], check=False, timeout=300)


def _read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip().strip('"') for key, value in pairs}


def _wait_http(url: str, name: str, timeout_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        try:
            request = urllib.request.Request(url, data=b"{}", method="POST")
            with urllib.request.urlopen(request, timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the {name} baseline did not start")


def _stock_baseline(url: str, skus: int) -> None:
    body = json.dumps({"skus": [sku_name(i) for i in range(skus)], "available": ON_HAND})
    request = urllib.request.Request(
        f"{url}/admin/stock",
        data=body.encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=300) as answer:
        if answer.status != 200:
            raise RuntimeError(f"stocking {url} answered {answer.status}")
