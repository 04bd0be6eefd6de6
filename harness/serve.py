"""A private Serve on a shared machine: its own HAProxy files and ports, and the wait until the
app it deploys answers."""

import os
import tempfile
import time
import urllib.request
from pathlib import Path

from harness.ports import free_port


def private_serve_files() -> Path:
    """Point Serve's HAProxy files and fallback port at this run's own (they default to fixed
    paths and ports, shared with anyone else's Serve on the machine); the directory to remove
    afterwards. Call before Ray starts."""
    # A short directory: HAProxy refuses socket paths over 97 characters.
    haproxy = Path(tempfile.mkdtemp(prefix="hp"))
    for name, file in (("CONFIG_FILE_LOC", "cfg"), ("SOCKET_PATH", "sock")):
        os.environ[f"RAY_SERVE_HAPROXY_{name}"] = str(haproxy / file)
    os.environ["RAY_SERVE_HAPROXY_SERVER_STATE_FILE"] = str(haproxy / "state")
    os.environ["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] = str(haproxy)
    for port in ("FALLBACK_PROXY_HTTP_PORT", "HAPROXY_STATS_PORT", "HAPROXY_METRICS_PORT"):
        os.environ[f"RAY_SERVE_{port}"] = str(free_port())
    return haproxy


def wait_ready(url: str, timeout: float = 120.0) -> None:
    """Until the app answers its readiness route (the proxy may need a moment)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError as error:
            last = error
        time.sleep(0.5)
    raise RuntimeError(f"the app at {url} did not become ready: {last}")
