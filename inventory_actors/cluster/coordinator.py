"""Placing a reservation whose lines live on several shards (docs/reservations.md).

The caller (a Serve replica, or the Python client) drives three steps; any of them may be the
last one it takes, because it may die at any point:

1. Open at the home shard: the reservation is recorded as pending, with a lease (10 s), and the
   home's own lines are held in the same step.
2. Prepare at every other shard, in parallel: each holds its lines as a coordinated part.
3. Activate at the home if every part is held (the reservation is active for its TTL from
   now), else abort (released).

A caller that dies leaves a pending reservation: its home releases it when the lease ends and
tells every shard, so orphaned parts live at most one lease. With an idempotency key every step
has its own key derived from it, so a retry replays the steps that happened and runs the rest.
"""

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence

from inventory_actors.domain import (
    AbortReservation,
    ActivateReservation,
    DomainError,
    HoldLine,
    HoldView,
    InsufficientStock,
    LineRequest,
    OpenReservation,
    PrepareHold,
    ReserveStock,
    Shortage,
)
from inventory_actors.shard.errors import ServiceError
from inventory_actors.shard.partitioning import PartitionMap
from inventory_actors.shard.protocol import IDEMPOTENCY_KEY_LENGTH_MAX, Outcome, Submission

Send = Callable[[int, Sequence[Submission]], Awaitable[list[Outcome]]]

PENDING_LEASE_MS = 10_000


def parts_of(
    partition: PartitionMap, lines: Sequence[LineRequest]
) -> dict[int, tuple[LineRequest, ...]]:
    """The lines of each shard, in the order the shards first appear."""
    parts: dict[int, list[LineRequest]] = {}
    for line in lines:
        parts.setdefault(partition.shard_of_sku(line.sku), []).append(line)
    return {shard: tuple(shard_lines) for shard, shard_lines in parts.items()}


def step_key(key: str | None, step: str) -> str | None:
    """The idempotency key of one step of a keyed reservation."""
    if key is None:
        return None
    derived = f"{key}:{step}"
    if len(derived) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        return derived
    return "s" + hashlib.sha256(derived.encode()).hexdigest()[:40]


def spans_shards(partition: PartitionMap, command: ReserveStock) -> bool:
    """Whether placing `command` needs the protocol: some line lives off its home shard."""
    home = partition.shard_of_hold(command.hold_id)
    return any(partition.shard_of_sku(line.sku) != home for line in command.lines)


async def place_reservation(
    send: Send,
    partition: PartitionMap,
    command: ReserveStock,
    *,
    key: str | None = None,
    fingerprint: str | None = None,
    lease_ms: int = PENDING_LEASE_MS,
) -> Outcome:
    """Hold every line of `command` or none; its hold id names the home shard, which must own
    the first line's SKU. One shard involved: a plain hold, in one step."""
    home = partition.shard_of_hold(command.hold_id)
    if not spans_shards(partition, command):
        return (await send(home, [Submission(command, key, fingerprint)]))[0]
    parts = parts_of(partition, command.lines)
    rid = command.hold_id
    opening = OpenReservation(
        rid,
        home,
        tuple(sorted(set(parts) | {home})),
        parts.get(home, ()),
        command.ttl_ms,
        lease_ms,
        command.reference,
    )
    opened = (await send(home, [Submission(opening, step_key(key, "open"), fingerprint)]))[0]
    if not isinstance(opened.value, HoldView):
        return opened
    lease_until_ms = opened.value.expires_at_ms
    remote = [shard for shard in parts if shard != home]
    answers = await _prepare(
        send, remote, parts, rid, lease_until_ms, command.reference, key, fingerprint
    )
    failures = [outcome for outcome in answers if not outcome.ok]
    if failures:
        await send(home, [Submission(AbortReservation(rid), step_key(key, "abort"), fingerprint)])
        return Outcome(_first_failure(failures), opened.replayed)
    held: list[HoldLine] = []
    for outcome in answers:
        assert isinstance(outcome.value, HoldView)
        held.extend(outcome.value.lines)
    activate = Submission(ActivateReservation(rid, tuple(held)), step_key(key, "activate"))
    return (await send(home, [activate._replace(fingerprint=fingerprint)]))[0]


async def _prepare(
    send: Send,
    shards: list[int],
    parts: dict[int, tuple[LineRequest, ...]],
    rid: str,
    lease_until_ms: int,
    reference: str | None,
    key: str | None,
    fingerprint: str | None,
) -> list[Outcome]:
    calls = [
        send(
            shard,
            [
                Submission(
                    PrepareHold(rid, parts[shard], lease_until_ms, reference),
                    step_key(key, f"prepare-{shard}"),
                    fingerprint,
                )
            ],
        )
        for shard in shards
    ]
    return [answer[0] for answer in await asyncio.gather(*calls)]


def _first_failure(failures: list[Outcome]) -> DomainError | ServiceError:
    """Short lines of every shard together, as one InsufficientStock; else the first error."""
    shortages: list[Shortage] = []
    for outcome in failures:
        if not isinstance(outcome.value, InsufficientStock):
            assert isinstance(outcome.value, DomainError | ServiceError)
            return outcome.value
        shortages.extend(outcome.value.shortages)
    return InsufficientStock(tuple(shortages))
