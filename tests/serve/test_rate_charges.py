"""What a request costs its key, through the app as deployed (admission gate included): one
token however its `Authorization: Bearer` is spelled, and a batch one per operation, taken
whole or refused whole (docs/http.md, "Rate limits")."""

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import CommitHold, HoldNotFound
from inventory_actors.shard.partitioning import PartitionMap, new_hold_id
from inventory_actors.shard.protocol import Outcome, Submission
from serve_app.deployment import app
from serve_app.keys import KeyStore, Role, bearer_key
from serve_app.middleware.rate_limit import RateLimiter, RateLimits, RoleLimit
from serve_app.service import Service, Settings, install_service

BURST = 10
# No refill during a test: every token a request takes shows in the next answer's headers.
LIMITS = RateLimits(writer=RoleLimit(per_second=0.001, burst=BURST))


class NoHolds:
    """One shard that knows no reservation: a commit is 404, and every command is recorded."""

    partition = PartitionMap.initial(1)

    def __init__(self) -> None:
        self.sent: list[Submission] = []

    def shard_of(self, command: Any) -> int:
        return 0

    async def call_shard(
        self, shard_id: int, submissions: Sequence[Submission], request_ids: Sequence[str] = ()
    ) -> list[Outcome]:
        self.sent.extend(submissions)
        return [Outcome(HoldNotFound(cast(CommitHold, sub.command).hold_id)) for sub in submissions]

    async def get_hold_async(self, hold_id: str) -> None:
        return None


@pytest.fixture
def shard() -> NoHolds:
    return NoHolds()


@pytest.fixture
def key(tmp_path: Path, shard: NoHolds) -> Iterator[str]:
    """A fresh writer key of a replica with the limits above."""
    keys = KeyStore.open(tmp_path)
    _, presented = keys.create(Role.WRITER)
    settings = Settings(rate_limits=LIMITS)
    install_service(
        Service(settings, cast(InventoryClient, shard), keys, RateLimiter(settings.rate_limits))
    )
    yield presented


def remaining(answer: Any) -> int:
    return int(answer.headers["RateLimit-Remaining"])


def commits(count: int) -> dict[str, Any]:
    return {"operations": [{"op": "commit", "reservation_id": new_hold_id(1)}] * count}


@pytest.mark.parametrize(
    "spelling", ["Bearer {}", "bearer {}", "BEARER {}", "Bearer  {}", "bEaReR   {}"]
)
def test_a_request_is_charged_once_however_its_authorization_is_spelled(
    key: str, spelling: str
) -> None:
    with TestClient(app) as http:
        auth = {"Authorization": spelling.format(key)}
        answers = [http.get("/v1/reservations/r_none", headers=auth) for _ in range(3)]
    assert [a.status_code for a in answers] == [404] * 3
    assert [remaining(a) for a in answers] == [BURST - 1, BURST - 2, BURST - 3]


def test_the_admission_gate_and_the_routes_read_a_key_alike() -> None:
    presented = "inv_0123456789ab_secret"
    for spelling in ("Bearer x", "bearer x", "Bearer   x", " Bearer x "):
        assert bearer_key(spelling.replace("x", presented)) == presented, spelling
    for header in (
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic x",
        "Bearerx",
        "Bearer x y",
        "x",
        "Bearer\tx",
    ):
        assert bearer_key(header) is None, header


def test_a_batch_costs_one_token_per_operation(key: str, shard: NoHolds) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(app) as http:
        answer = http.post("/v1/batch", json=commits(4), headers=auth)
        assert answer.status_code == 200, answer.text
        assert remaining(answer) == BURST - 4
        assert len(shard.sent) == 4
        single = http.post("/v1/batch", json=commits(1), headers=auth)
        assert single.status_code == 200, single.text
        assert remaining(single) == BURST - 5


def test_a_batch_the_bucket_cannot_pay_for_is_refused_whole(key: str, shard: NoHolds) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    with TestClient(app) as http:
        assert http.post("/v1/batch", json=commits(4), headers=auth).status_code == 200
        sent = len(shard.sent)
        # Six tokens left: seven operations are refused and none of them runs. Like any request
        # read, the refused batch keeps the token it took on arrival, and only that one.
        refused = http.post("/v1/batch", json=commits(7), headers=auth)
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == "/problems/rate-limited"
        assert remaining(refused) == BURST - 5
        # Retry-After is the wait for all seven tokens, at 0.001 a second: two more.
        assert int(refused.headers["Retry-After"]) == 2_000
        # More than the bucket ever holds: waiting does not help, the answer says to split.
        too_big = http.post("/v1/batch", json=commits(BURST + 1), headers=auth)
        assert too_big.status_code == 429, too_big.text
        assert "split" in too_big.json()["detail"]
        assert remaining(too_big) == BURST - 6
        assert len(shard.sent) == sent, "a refused batch ran operations"
        after = http.get("/v1/reservations/r_none", headers=auth)
    assert remaining(after) == BURST - 7
