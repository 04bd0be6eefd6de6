"""Placing a reservation whose lines live on several shards: open it at the home shard (pending,
with a lease, the home's own lines held), prepare a part at every other shard in parallel, then
activate or abort at the home. The caller may die after any step: the home releases a pending
reservation when its lease ends, and with an idempotency key each step has its own key derived
from it, so a retry runs only what did not happen (docs/reservations.md, Placing)."""

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
        parts.setdefault(partition.owner(sku=line.sku), []).append(line)
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
    home = partition.owner(hold=command.hold_id)
    return any(partition.owner(sku=line.sku) != home for line in command.lines)


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
    home = partition.owner(hold=command.hold_id)
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
