"""The primary's side of log shipping: each batch goes to every follower in parallel with the
primary's own fsync, and is acknowledged once a majority of the voters has it on disk."""

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ray.exceptions import RayError

from inventory_actors.replication.config import ReplicationConfig
from inventory_actors.replication.membership import ReplicaSet
from inventory_actors.replication.protocol import ShipAnswer
from inventory_actors.replication.quorum import until_enough
from persistence import IdempotencyRecord, LogRecord

log = logging.getLogger(__name__)


class Deposed(Exception):
    """A replica promised a newer epoch: this primary's epoch is over."""

    def __init__(self, epoch: int) -> None:
        super().__init__(epoch)
        self.epoch = epoch


class NoMajority(Exception):
    """Too few voters took the batch in time."""


class _Link:
    """One follower as the primary sees it."""

    def __init__(self, name: str, handle: Any) -> None:
        self.name, self.handle = name, handle
        self.outstanding = 0


class Shipper:
    """Ships the batches of the primary `name` of `replica_set` (its epoch) to its followers."""

    def __init__(
        self,
        name: str,
        replica_set: ReplicaSet,
        prev: tuple[int, int],
        config: ReplicationConfig,
        handle_of: Callable[[str], Any],
        on_lost: Callable[[BaseException], None],
        on_caught_up: Callable[[str, str], None],
    ) -> None:
        """`prev` is (last LSN, its epoch) of the primary's log when it starts serving;
        `on_caught_up(name, disk_id)` is told of a member whose new disk now has the log."""
        self.name, self.replica_set, self.config = name, replica_set, config
        self.epoch = replica_set.epoch
        self._prev = prev
        self._links = [
            _Link(m.name, handle_of(m.name)) for m in replica_set.members if m.name != name
        ]
        self._on_lost, self._on_caught_up = on_lost, on_caught_up
        self.last_sent_monotonic = 0.0
        # Reads are served without asking the followers until then (`lease`).
        self.lease_until_monotonic = 0.0
        self.closed = False

    def ship(
        self, records: list[LogRecord], idempotency: list[IdempotencyRecord]
    ) -> "asyncio.Future[None]":
        prev_lsn, prev_epoch = self._prev
        if records:
            self._prev = (records[-1].lsn, self.epoch)
        sent = time.monotonic()
        answers = self._send(prev_lsn, prev_epoch, records, idempotency)
        return asyncio.ensure_future(self._majority(answers, sent))

    def heartbeat(self) -> "asyncio.Future[None]":
        """Tell the followers this primary is alive, and where its log ends; a majority's
        answers renew the read lease."""
        prev_lsn, prev_epoch = self._prev
        sent = time.monotonic()
        done = asyncio.ensure_future(self._majority(self._send(prev_lsn, prev_epoch, [], []), sent))
        done.add_done_callback(self._check_heartbeat)
        return done

    def _check_heartbeat(self, done: "asyncio.Future[None]") -> None:
        error = None if done.cancelled() else done.exception()
        if isinstance(error, Deposed):
            self.lost(error)

    async def lease(self) -> None:
        """Return while this primary holds its read lease: a majority answered a message it
        sent less than `read_lease_seconds` ago, and none of them will promise another
        candidate until `seal_quiet_seconds` after they got it (so no other primary can have
        acknowledged a write meanwhile). Otherwise renew it, or raise NoMajority or Deposed."""
        if time.monotonic() < self.lease_until_monotonic:
            return
        await self.heartbeat()

    def lost(self, error: BaseException) -> None:
        if not self.closed:
            self.closed = True
            self._on_lost(error)

    def _send(
        self,
        prev_lsn: int,
        prev_epoch: int,
        records: list[LogRecord],
        idempotency: list[IdempotencyRecord],
    ) -> "list[asyncio.Future[ShipAnswer | None]]":
        self.last_sent_monotonic = time.monotonic()
        answers: list[asyncio.Future[ShipAnswer | None]] = []
        # Plain tuples pickle four times faster than named ones (`protocol.as_records`).
        plain_records = [tuple(record) for record in records]
        plain_idempotency = [tuple(record) for record in idempotency]
        for link in self._links:
            if link.outstanding >= self.config.outstanding_ships_max:
                continue  # frozen or far behind: it copies the log by itself when it is back
            ref = link.handle.replicate.remote(
                self.epoch, self.name, prev_lsn, prev_epoch, plain_records, plain_idempotency
            )
            link.outstanding += 1
            answers.append(asyncio.ensure_future(self._answer(link, ref)))
        return answers

    async def _answer(self, link: _Link, ref: Any) -> ShipAnswer | None:
        try:
            answer: ShipAnswer = await ref
        except RayError:
            return None
        finally:
            link.outstanding -= 1
        member = self.replica_set.member(link.name)
        if answer.ok and member is not None and member.disk_id != answer.state.disk_id:
            self._on_caught_up(link.name, answer.state.disk_id)
        return answer

    async def _majority(
        self, answers: "list[asyncio.Future[ShipAnswer | None]]", sent_monotonic: float
    ) -> None:
        own = self.replica_set.member(self.name)
        needed = self.replica_set.quorum() - (1 if own is not None and own.disk_id else 0)
        if needed <= 0:
            self._renew(sent_monotonic)
            return

        def enough(_: int, answer: ShipAnswer | None) -> bool:
            nonlocal needed
            if answer is None:
                return False
            if answer.state.promised_epoch > self.epoch:
                raise Deposed(answer.state.promised_epoch)
            if answer.ok and self._votes(answer):
                needed -= 1
            return needed <= 0

        waiting = {future: index for index, future in enumerate(answers)}
        if await until_enough(waiting, self.config.ack_timeout_seconds, enough):
            self._renew(sent_monotonic)
            return
        raise NoMajority(f"epoch {self.epoch}: {needed} more voters needed")

    def _renew(self, sent_monotonic: float) -> None:
        until = sent_monotonic + self.config.read_lease_seconds
        self.lease_until_monotonic = max(self.lease_until_monotonic, until)

    def _votes(self, answer: ShipAnswer) -> bool:
        return any(
            m.disk_id and m.disk_id == answer.state.disk_id for m in self.replica_set.members
        )
