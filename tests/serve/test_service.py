"""The replica's Service: routing into the coalescer, validation skipped only for commands a
route's model already checked, and the timestamp format of the answers."""

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from inventory_actors.cluster.boundary import ReservationBody, validate_command
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.cluster.coordinator import step_key
from inventory_actors.domain import (
    AdjustStock,
    ClaimKey,
    InvalidCommand,
    KeyClaimed,
    LineRequest,
    ReserveStock,
)
from inventory_actors.shard.errors import IdempotencyKeyReused
from inventory_actors.shard.partitioning import PartitionMap, new_hold_id, slot_of
from inventory_actors.shard.protocol import Outcome, Submission
from serve_app.app import create_app
from serve_app.keys import KeyStore, Role
from serve_app.middleware.rate_limit import RateLimiter, RateLimits
from serve_app.models import ReserveOp
from serve_app.render import rfc3339
from serve_app.routes import batch
from serve_app.service import Service, Settings, install_service

TTL_MS = 60_000


class FakeClient:
    """Routes by the first character of the SKU (two shards); answers each command with its
    own hold id or SKU, and records the calls."""

    partition = PartitionMap.initial(2)

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[Submission]]] = []
        # Keys whose claim the key's shard refuses (first used with another request).
        self.claimed_elsewhere: set[str] = set()

    def shard_of(self, command: Any) -> int:
        sku = command.lines[0].sku if isinstance(command, ReserveStock) else command.sku
        return 0 if sku < "m" else 1

    async def call_shard(
        self, shard_id: int, submissions: Sequence[Submission], request_ids: Sequence[str] = ()
    ) -> list[Outcome]:
        self.calls.append((shard_id, list(submissions)))
        return [self.answer(sub) for sub in submissions]

    def answer(self, sub: Submission) -> Outcome:
        if isinstance(sub.command, ClaimKey):
            if sub.idempotency_key in self.claimed_elsewhere:
                return Outcome(IdempotencyKeyReused(str(sub.idempotency_key)))
            return Outcome(KeyClaimed(sub.command.shard_id))
        return Outcome(cast(Any, self.name(sub.command)))

    @staticmethod
    def name(command: Any) -> str:
        return str(command.hold_id if isinstance(command, ReserveStock) else command.sku)


def service(tmp_path: Path) -> tuple[Service, FakeClient]:
    client = FakeClient()
    keys = KeyStore.open(tmp_path)
    return Service(Settings(), cast(InventoryClient, client), keys, RateLimiter()), client


def hold(sku: str) -> ReserveStock:
    return ReserveStock(new_hold_id(slot_of(sku)), (LineRequest(sku, 1),), TTL_MS)


def values(outcomes: Sequence[Outcome]) -> list[object]:
    return [cast(object, outcome.value) for outcome in outcomes]


def test_one_shard_and_several_shards_answer_in_order(tmp_path: Path) -> None:
    svc, client = service(tmp_path)
    first = hold("apple")
    assert values(asyncio.run(svc.run([Submission(first)]))) == [first.hold_id]
    commands = [hold("apple"), hold("zebra"), hold("banana"), hold("yak")]
    outcomes = asyncio.run(svc.run([Submission(c) for c in commands]))
    assert values(outcomes) == [c.hold_id for c in commands]
    assert sorted(shard for shard, _ in client.calls[1:]) == [0, 1]


def test_unchecked_commands_are_still_validated(tmp_path: Path) -> None:
    svc, client = service(tmp_path)
    bad = AdjustStock("apple", "L1", 0, "received")  # delta 0: only validate_command refuses it
    good = hold("apple")
    outcomes = values(asyncio.run(svc.run([Submission(bad), Submission(good)], [False, True])))
    assert isinstance(outcomes[0], InvalidCommand)
    assert outcomes[1] == good.hold_id
    assert [len(subs) for _, subs in client.calls] == [1]


def test_run_one_without_a_key_sends_no_fingerprint(tmp_path: Path) -> None:
    svc, client = service(tmp_path)
    asyncio.run(svc.run_one(hold("apple"), None, None, checked=True))
    asyncio.run(svc.run_one(hold("apple"), "k1", "print", checked=True))
    sent = [subs[0] for _, subs in client.calls]
    assert (sent[0].idempotency_key, sent[0].fingerprint) == (None, None)
    claim, command = sent[1:]
    assert isinstance(claim.command, ClaimKey) and claim.fingerprint == "print"
    assert (command.idempotency_key, command.fingerprint) == ("k1", "print")


def test_a_key_claimed_by_another_request_runs_nothing(tmp_path: Path) -> None:
    svc, client = service(tmp_path)
    client.claimed_elsewhere.add(step_key("k1", "claim") or "")
    outcome = asyncio.run(svc.run_one(hold("apple"), "k1", "print", checked=True))
    assert isinstance(outcome.value, IdempotencyKeyReused) and outcome.value.key == "k1"
    # Only the claim was sent, to the key's own shard.
    assert [(shard, [type(s.command) for s in subs]) for shard, subs in client.calls] == [
        (client.partition.owner(key="k1"), [ClaimKey])
    ]


sku_ids = st.from_regex(r"\A[A-Za-z0-9._:/-]{1,128}\Z")
lines = st.lists(
    st.fixed_dictionaries(
        {"sku": sku_ids, "quantity": st.integers(1, 1_000_000_000)},
        optional={"location": sku_ids},
    ),
    min_size=1,
    max_size=100,
)


@given(
    lines=lines,
    ttl=st.integers(1, 86_400),
    reference=st.none() | st.text(max_size=256),
)
def test_commands_from_validated_reservation_bodies_pass_validation(
    lines: list[dict[str, Any]], ttl: int, reference: str | None
) -> None:
    """Why the reserve route and batch reserve operations may skip `validate_command`."""
    fields = {"lines": lines, "ttl_seconds": ttl, "reference": reference}
    body = ReservationBody.model_validate(fields)
    validate_command(body.to_command(new_hold_id(slot_of(body.lines[0].sku))))
    op = ReserveOp.model_validate({"op": "reserve", **fields})
    validate_command(batch.command_of(op, None))
    validate_command(batch.command_of(op, "k" + "0" * 40))


@pytest.mark.parametrize(
    "epoch_ms",
    [0, 1, 999, 1_000, 1_700_000_000_999, 253_402_300_799_999]
    + [random.Random(7).randrange(0, 253_402_300_799_999) for _ in range(1_000)],
)
def test_rfc3339_is_utc_with_milliseconds(epoch_ms: int) -> None:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    expected = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"
    assert rfc3339(epoch_ms) == expected


def test_a_deployment_may_cap_ttls_below_the_contracts_day(tmp_path: Path) -> None:
    """A reservation, an extension or a batch reserve longer than `ttl_seconds_max` is 422
    and reaches no shard."""
    client = FakeClient()
    keys = KeyStore.open(tmp_path)
    writer = keys.create(Role.WRITER)[1]
    settings = Settings(ttl_seconds_max=60, rate_limits=RateLimits.disabled())
    install_service(Service(settings, cast(InventoryClient, client), keys, RateLimiter()))
    auth = {"Authorization": f"Bearer {writer}"}
    line = {"sku": "apple", "quantity": 1}
    with TestClient(create_app()) as http:
        too_long = http.post(
            "/v1/reservations", json={"lines": [line], "ttl_seconds": 61}, headers=auth
        )
        assert too_long.status_code == 422, too_long.text
        assert too_long.json()["type"] == "/problems/validation-error"
        assert "at most 60" in too_long.json()["detail"]
        extend = http.post(
            "/v1/reservations/r_0001aaaaaaaaaaaaaaaaaaaa/extend",
            json={"ttl_seconds": 3600},
            headers=auth,
        )
        assert extend.status_code == 422, extend.text
        ops = [{"op": "reserve", "lines": [line], "ttl_seconds": 61}]
        batch_answer = http.post("/v1/batch", json={"operations": ops}, headers=auth)
        assert batch_answer.status_code == 200, batch_answer.text
        [result] = batch_answer.json()["results"]
        assert result["status"] == 422 and result["body"]["type"] == "/problems/validation-error"
    assert client.calls == [], "a refused request reached a shard"
    assert settings.ttl_refusal(60) is None
    with pytest.raises(ValueError):
        Settings(ttl_seconds_max=86_401)
