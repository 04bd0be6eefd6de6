"""Placing a reservation whose lines live on several shards: open it at the home shard (pending,
with a lease, the home's own lines held), prepare a part at every other shard in parallel, then
activate at the home. A keyed cart goes in attempts, each step keyed: a temporary failure leaves
the attempt for a retry to finish, one that lapsed is aborted and the next placed under a new id,
so only a final answer is ever stored for the key (docs/reservations.md, Placing; Retrying)."""

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum
from typing import NamedTuple

from inventory_actors.domain import (
    AbortReservation,
    ActivateReservation,
    Command,
    DomainError,
    HoldExists,
    HoldLine,
    HoldNotActive,
    HoldStatus,
    HoldView,
    InsufficientStock,
    InvalidCommand,
    LineRequest,
    OpenReservation,
    PrepareHold,
    ReserveStock,
    SettleHold,
    Shortage,
)
from inventory_actors.shard.errors import (
    Overloaded,
    ServiceError,
    ShardUnavailable,
    StorageFailure,
)
from inventory_actors.shard.partitioning import PartitionMap, new_hold_id, slot_of_hold
from inventory_actors.shard.protocol import (
    DERIVED_KEY_MARK,
    IDEMPOTENCY_KEY_LENGTH_MAX,
    Outcome,
    Submission,
    is_client_idempotency_key,
)

Send = Callable[[int, Sequence[Submission]], Awaitable[list[Outcome]]]

PENDING_LEASE_MS = 10_000
# A keyed cart is placed in at most this many attempts. A new one starts only once the one before
# has lapsed (its lease ended before it was activated), at most one per request, and a retry
# replays the steps of every earlier attempt: the bound keeps that replay short.
ATTEMPTS_MAX = 16
# Failures after which the same request may succeed: the shard was down, busy or lost the write.
TEMPORARY = (ShardUnavailable, StorageFailure, Overloaded)
LAPSED = (
    "the cart's pending lease ended before every shard held its part, and nothing of it is "
    "held: retry with the same Idempotency-Key"
)


class _Kind(Enum):
    OK = "ok"
    TEMPORARY = "temporary"
    # The attempt can never be activated: its lease has ended, or its home released it.
    LAPSED = "lapsed"
    FINAL = "final"


def check_client_key(key: object) -> None:
    """Refuse (InvalidCommand) a key no client may send: derived keys are the service's own."""
    if key is not None and not is_client_idempotency_key(key):
        raise InvalidCommand("idempotency key must be 1 to 255 printable ASCII characters")


def parts_of(
    partition: PartitionMap, lines: Sequence[LineRequest]
) -> dict[int, tuple[LineRequest, ...]]:
    """The lines of each shard, in the order the shards first appear."""
    parts: dict[int, list[LineRequest]] = {}
    for line in lines:
        parts.setdefault(partition.owner(sku=line.sku), []).append(line)
    return {shard: tuple(shard_lines) for shard, shard_lines in parts.items()}


def step_key(key: str | None, step: str) -> str | None:
    """The idempotency key of one step of a keyed request. It carries `DERIVED_KEY_MARK`, so it
    is never a client's key; a key too long to carry whole is hashed."""
    if key is None:
        return None
    mark = DERIVED_KEY_MARK
    derived = f"{mark}{step}{mark}{key}"
    if len(derived) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        return derived
    return f"{mark}{step}{mark}{mark}{hashlib.sha256(key.encode()).hexdigest()}"


def legacy_step_key(key: str | None, step: str) -> str | None:
    """The form step keys had before they were marked: read only to finish a cart whose first
    attempt was opened under it."""
    if key is None:
        return None
    derived = f"{key}:{step}"
    if len(derived) <= IDEMPOTENCY_KEY_LENGTH_MAX:
        return derived
    return "s" + hashlib.sha256(derived.encode()).hexdigest()[:40]


def attempt_id(hold_id: str, attempt: int) -> str:
    """The reservation id of a cart's `attempt`: the cart's own id first, then ids derived from
    it that name the same home slot."""
    if attempt == 1:
        return hold_id
    return new_hold_id(slot_of_hold(hold_id), f"{hold_id}/{attempt}".encode())


def spans_shards(partition: PartitionMap, command: ReserveStock) -> bool:
    """Whether placing `command` needs the protocol: some line lives off its home shard."""
    home = partition.owner(hold=command.hold_id)
    return any(partition.owner(sku=line.sku) != home for line in command.lines)


class _Steps(NamedTuple):
    """The idempotency keys of one attempt's steps (none without a client's key)."""

    key: str | None
    attempt: int
    legacy: bool = False

    def of(self, step: str) -> str | None:
        name = step if self.attempt == 1 else f"{step}.{self.attempt}"
        return (legacy_step_key if self.legacy else step_key)(self.key, name)


class _Cart(NamedTuple):
    send: Send
    home: int
    parts: dict[int, tuple[LineRequest, ...]]
    command: ReserveStock
    key: str | None
    fingerprint: str | None
    lease_ms: int

    async def one(self, shard: int, command: Command, key: str | None) -> Outcome:
        return (await self.send(shard, [Submission(command, key, self.fingerprint)]))[0]


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
    the first line's SKU. One shard involved: a plain hold, in one step. With `key`, a temporary
    failure is answered as such and a retry with the key finishes the cart."""
    try:
        check_client_key(key)
    except InvalidCommand as error:
        return Outcome(error)
    home = partition.owner(hold=command.hold_id)
    if not spans_shards(partition, command):
        return (await send(home, [Submission(command, key, fingerprint)]))[0]
    parts = parts_of(partition, command.lines)
    cart = _Cart(send, home, parts, command, key, fingerprint, lease_ms)
    # Without a key nobody can resume an attempt: there is one, aborted on any failure.
    for attempt in range(1, (ATTEMPTS_MAX if key is not None else 1) + 1):
        outcome, opened_here = await _attempt(cart, attempt)
        if outcome is not None:
            return outcome
        if opened_here:
            # This request's own attempt lapsed: the client retries, as after a timeout.
            return Outcome(ShardUnavailable(home, LAPSED))
    detail = f"none of the cart's {ATTEMPTS_MAX} attempts was placed in time: use a new key"
    return Outcome(ShardUnavailable(home, detail))


async def _attempt(cart: _Cart, attempt: int) -> tuple[Outcome | None, bool]:
    """Run one attempt, or replay what of it happened: its answer, or None once it lapsed and
    its home has released it; and whether this call opened it."""
    rid = attempt_id(cart.command.hold_id, attempt)
    opened, steps = await _open(cart, rid, _Steps(cart.key, attempt))
    if not isinstance(opened.value, HoldView):
        return opened, False
    here = not opened.replayed
    answers = await _prepare(cart, rid, opened.value.expires_at_ms, steps)
    failed = [outcome for outcome in answers if not outcome.ok]
    final = [outcome for outcome in failed if _kind(outcome) is _Kind.FINAL]
    if final:
        await cart.one(cart.home, AbortReservation(rid), steps.of("abort"))
        return Outcome(_first_failure(final), opened.replayed), here
    if failed and (cart.key is None or any(_kind(o) is _Kind.LAPSED for o in failed)):
        return await _abort(cart, rid, steps, failed), here
    if failed:
        # Temporary: the attempt stays pending for a retry with the key, or until its lease ends.
        return Outcome(failed[0].value), here
    held: list[HoldLine] = []
    for outcome in answers:
        assert isinstance(outcome.value, HoldView)
        held.extend(outcome.value.lines)
    activate = ActivateReservation(rid, tuple(held))
    activated = await cart.one(cart.home, activate, steps.of("activate"))
    if _kind(activated) is _Kind.LAPSED:
        return await _abort(cart, rid, steps, [activated]), here
    return activated, here


async def _open(cart: _Cart, rid: str, steps: _Steps) -> tuple[Outcome, _Steps]:
    opening = OpenReservation(
        rid,
        cart.home,
        tuple(sorted(set(cart.parts) | {cart.home})),
        cart.parts.get(cart.home, ()),
        cart.command.ttl_ms,
        cart.lease_ms,
        cart.command.reference,
    )
    opened = await cart.one(cart.home, opening, steps.of("open"))
    if isinstance(opened.value, HoldExists) and steps.attempt == 1 and steps.key is not None:
        # Opened before step keys were marked: its steps are stored under their old form.
        legacy = steps._replace(legacy=True)
        again = await cart.one(cart.home, opening, legacy.of("open"))
        if again.ok:
            return again, legacy
    return opened, steps


async def _prepare(cart: _Cart, rid: str, lease_until_ms: int, steps: _Steps) -> list[Outcome]:
    """Every other shard's part, in parallel. From the second attempt on, each shard first hears
    that the attempt before was released (its home decided so): that attempt's units there are
    free again before this attempt's part is checked against the stock."""
    before = None
    if steps.attempt > 1:
        released = HoldStatus.RELEASED.value
        before = SettleHold(attempt_id(cart.command.hold_id, steps.attempt - 1), released)
    calls = []
    for shard, lines in cart.parts.items():
        if shard == cart.home:
            continue
        part = PrepareHold(rid, lines, lease_until_ms, cart.command.reference)
        prepare = Submission(part, steps.of(f"prepare-{shard}"), cart.fingerprint)
        subs = [prepare] if before is None else [Submission(before), prepare]
        calls.append(cart.send(shard, subs))
    return [answer[-1] for answer in await asyncio.gather(*calls)]


async def _abort(cart: _Cart, rid: str, steps: _Steps, failed: list[Outcome]) -> Outcome | None:
    """Release the attempt at its home. None when it lapsed (the next attempt may start);
    otherwise the answer to give: the abort's failure, or the first of `failed`."""
    aborted = await cart.one(cart.home, AbortReservation(rid), steps.of("abort"))
    if not aborted.ok:
        return aborted
    if any(_kind(outcome) is _Kind.LAPSED for outcome in failed):
        return None
    return Outcome(failed[0].value)


def _kind(outcome: Outcome) -> _Kind:
    value = outcome.value
    if outcome.ok:
        return _Kind.OK
    if isinstance(value, TEMPORARY):
        return _Kind.TEMPORARY
    # A part refused because the home gave the attempt up (a lease check, or the release's
    # tombstone), or an activation after the lease.
    if isinstance(value, HoldExists) or (
        isinstance(value, HoldNotActive) and value.status == HoldStatus.RELEASED.value
    ):
        return _Kind.LAPSED
    return _Kind.FINAL


def _first_failure(failures: list[Outcome]) -> DomainError | ServiceError:
    """Short lines of every shard together, as one InsufficientStock; else the first error."""
    shortages: list[Shortage] = []
    for outcome in failures:
        if not isinstance(outcome.value, InsufficientStock):
            assert isinstance(outcome.value, DomainError | ServiceError)
            return outcome.value
        shortages.extend(outcome.value.shortages)
    return InsufficientStock(tuple(shortages))
