"""A private single-member etcd for the replicated mode's tests and runs: installs Debian's
etcd-server when the `etcd` binary is missing, starts etcd on free local ports with its data and
log in one directory, and stops it with its whole process group."""

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import etcd3gw
from etcd3gw.client import Etcd3Client

from harness.ports import free_port

HOST = "127.0.0.1"
# Raft timings for a single member on one machine: a leader within about a second of the start
# (etcd's defaults are 100 ms and 1000 ms too; set here so a change of defaults cannot slow tests).
HEARTBEAT_INTERVAL_MS = 100
ELECTION_TIMEOUT_MS = 1000
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
# A start whose process exits before it answers is tried again on new ports (a port probed free
# may be taken by another process before etcd binds it).
START_ATTEMPTS = 3

# Servers started by this process and not stopped yet: stopped at exit if their owner did not.
_running: set["LocalEtcd"] = set()


def _sudo_prefix() -> list[str]:
    """`sudo` when this process is not root, for the apt-get commands."""
    return [] if os.geteuid() == 0 else ["sudo"]


def _find_etcd() -> str | None:
    """The path of the `etcd` binary on PATH or in Debian's place for it, or None."""
    found = shutil.which("etcd")
    if found is not None:
        return found
    debian = Path("/usr/bin/etcd")
    return str(debian) if debian.is_file() and os.access(debian, os.X_OK) else None


def ensure_etcd_installed() -> str:
    """The path of the `etcd` binary; installs Debian's etcd-server with apt-get if missing."""
    found = _find_etcd()
    if found is not None:
        return found
    sudo = _sudo_prefix()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run([*sudo, "apt-get", "update"], check=True, env=env)
        subprocess.run([*sudo, "apt-get", "install", "-y", "etcd-server"], check=True, env=env)
    except (OSError, subprocess.CalledProcessError) as error:
        raise RuntimeError(
            f"etcd is not installed and installing Debian's etcd-server failed ({error}); "
            "install it with `make tools` or `apt-get install etcd-server`"
        ) from error
    found = _find_etcd()
    if found is None:
        raise RuntimeError(
            "etcd-server was installed but no `etcd` binary was found on PATH or in /usr/bin"
        )
    return found


def etcd_client(url: str, timeout_seconds: float = 5.0) -> Etcd3Client:
    """A client of etcd's v3 HTTP gateway at `url` (http://HOST:PORT)."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"not an etcd URL with a host and a port: {url!r}")
    return etcd3gw.client(
        host=parts.hostname,
        port=parts.port,
        protocol=parts.scheme or "http",
        timeout=timeout_seconds,
        # etcd 3.4 and later serve the gateway at /v3/; naming it saves a /version request per
        # client.
        api_path="/v3/",
    )


class LocalEtcd:
    """One etcd member on 127.0.0.1, in its own process group; a context manager that stops it."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int,
        peer_port: int,
        data_dir: Path,
        log_path: Path,
    ) -> None:
        """Wrap a started etcd process; use `LocalEtcd.start` to make one."""
        self._process = process
        self.host = HOST
        self.port = port
        self.peer_port = peer_port
        self.url = f"http://{HOST}:{port}"
        self.pid = process.pid
        self.data_dir = data_dir
        self.log_path = log_path
        self.start_seconds = 0.0

    @classmethod
    def start(cls, data_dir: Path, timeout_seconds: float = START_TIMEOUT_SECONDS) -> "LocalEtcd":
        """Start a single-member etcd with its data and log (etcd.log) under `data_dir`; return
        once its client port answers."""
        binary = ensure_etcd_installed()
        data_dir.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        for attempt in range(1, START_ATTEMPTS + 1):
            server = cls._spawn(binary, data_dir)
            try:
                server._wait_ready(began + timeout_seconds)
            except _ExitedEarly:
                server.stop()
                if attempt == START_ATTEMPTS:
                    raise RuntimeError(
                        f"etcd exited before answering, {START_ATTEMPTS} times; "
                        f"see {server.log_path}:\n{server.log_tail()}"
                    ) from None
                continue
            except BaseException:
                server.stop()
                raise
            server.start_seconds = time.monotonic() - began
            return server
        raise AssertionError("unreachable")

    @classmethod
    def _spawn(cls, binary: str, data_dir: Path) -> "LocalEtcd":
        """Launch etcd on fresh ports in a new session (its own process group)."""
        port, peer_port = free_port(), free_port()
        client_url = f"http://{HOST}:{port}"
        peer_url = f"http://{HOST}:{peer_port}"
        name = "local"
        log_path = data_dir / "etcd.log"
        command = [
            binary,
            f"--name={name}",
            # A fresh member directory per start: a member's data records its peer URL.
            f"--data-dir={data_dir / f'member-{peer_port}'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={name}={peer_url}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token=local-{peer_port}",
            f"--heartbeat-interval={HEARTBEAT_INTERVAL_MS}",
            f"--election-timeout={ELECTION_TIMEOUT_MS}",
            "--logger=zap",
            "--log-outputs=stderr",
        ]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = cls(process, port, peer_port, data_dir, log_path)
        _running.add(server)
        return server

    def _wait_ready(self, deadline: float) -> None:
        """Poll the client port until etcd reports a leader, exits, or the deadline."""
        client = etcd_client(self.url, timeout_seconds=1.0)
        while True:
            if self._process.poll() is not None:
                raise _ExitedEarly
            try:
                if client.status().get("leader", "0") not in ("", "0"):
                    return
                problem = "no leader yet"
            except Exception as error:
                problem = str(error)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"etcd at {self.url} was not ready before the deadline ({problem}); "
                    f"see {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def client(self, timeout_seconds: float = 5.0) -> Etcd3Client:
        """A client of this etcd."""
        return etcd_client(self.url, timeout_seconds)

    def running(self) -> bool:
        """Whether the etcd process has not exited."""
        return self._process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of etcd's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> None:
        """Terminate etcd's process group (SIGTERM, then SIGKILL after the deadline); safe to
        call more than once."""
        _running.discard(self)
        # The group is signalled only while its leader is not reaped: after that its id may be
        # another process's.
        if self._process.returncode is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self._process.wait(timeout_seconds)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._process.wait()

    def _signal_group(self, signum: signal.Signals) -> None:
        """Send `signum` to the process group etcd leads, if it still exists."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signum)

    def __enter__(self) -> Self:
        """The server itself; it is stopped when the block ends."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()

    def __repr__(self) -> str:
        """The URL and pid."""
        return f"LocalEtcd(url={self.url!r}, pid={self.pid})"


class _ExitedEarly(Exception):
    """etcd exited before its client port answered."""


@atexit.register
def _stop_leftovers() -> None:
    """Stop the servers whose owners did not, so none outlives this process."""
    for server in list(_running):
        server.stop(timeout_seconds=2.0)
