"""`inventory status` prints what each shard reports, an unreachable shard included."""

from typing import Any, cast

import pytest

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.protocol import ShardStatus
from inventory_cli.main import _print_status


class StatusOnly:
    def __init__(self, statuses: list[Any]) -> None:
        self._statuses = statuses

    def status(self) -> list[Any]:
        return self._statuses


def test_status_shows_each_shard_and_its_unsettled_reservations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    up = ShardStatus(0, "s0.sqlite3", 11, True, 42, 3, 5, 7, 2, 9, 1, 1, 1, 0, 0, 0.1, 1, 40, 2, 6)
    client = StatusOnly([up, ShardUnavailable(1, "recovering")])
    _print_status(cast(InventoryClient, client))
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == [
        "shard",
        "state",
        "lsn",
        "queue",
        "levels",
        "holds",
        "unsettled",
        "file",
    ]
    assert first.split() == ["0", "up", "42", "3", "7", "2", "6", "s0.sqlite3"]
    assert second.split()[:2] == ["1", "unavailable"]
