"""The local etcd of the replicated mode's tests: reads and writes, compare-and-swap, put-if-absent,
and a stopped server that no longer answers."""

import socket
import uuid
from pathlib import Path

import pytest
from etcd3gw.client import Etcd3Client

from harness.etcd import LocalEtcd, etcd_client
from tests.conftest import wait_for


@pytest.fixture
def client(etcd: LocalEtcd) -> Etcd3Client:
    """A client of the session's etcd, built from its URL."""
    return etcd_client(etcd.url)


@pytest.fixture
def key() -> str:
    """A key no other test uses (the session's etcd is shared)."""
    return f"/tests/harness-etcd/{uuid.uuid4().hex}"


def _refuses(host: str, port: int) -> bool:
    """Whether a TCP connection to host:port is refused."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def test_started_server_describes_itself(etcd: LocalEtcd) -> None:
    assert etcd.url == f"http://{etcd.host}:{etcd.port}"
    assert etcd.host == "127.0.0.1"
    assert etcd.running()
    assert etcd.pid > 0
    assert etcd.client().status()["version"].startswith("3.")


def test_put_then_get(client: Etcd3Client, key: str) -> None:
    assert client.get(key) == []
    assert client.put(key, "one")
    assert client.get(key) == [b"one"]
    assert client.put(key, "two")
    assert client.get(key) == [b"two"]


def test_replace_succeeds_once_then_refuses_the_stale_value(client: Etcd3Client, key: str) -> None:
    client.put(key, "v1")
    assert client.replace(key, "v1", "v2")
    assert not client.replace(key, "v1", "v3")
    assert client.get(key) == [b"v2"]


def test_create_is_refused_when_the_key_exists(client: Etcd3Client, key: str) -> None:
    assert client.create(key, "first")
    assert not client.create(key, "second")
    assert client.get(key) == [b"first"]


def test_stopped_server_no_longer_answers(tmp_path: Path) -> None:
    server = LocalEtcd.start(tmp_path / "etcd")
    other = etcd_client(server.url, timeout_seconds=2.0)
    assert other.put("/tests/stopped", "yes")
    server.stop()
    server.stop()
    assert not server.running()
    wait_for(lambda: _refuses(server.host, server.port), 5.0, "the stopped etcd's port to refuse")
    assert (tmp_path / "etcd" / "etcd.log").stat().st_size > 0
