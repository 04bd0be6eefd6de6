"""A Python client that creates or attaches to the shard actors of a data directory and routes
commands to the shards that own them. The HTTP app, restock jobs, benchmarks and tests use it.
"""

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayError

from inventory_actors.cluster.boundary import validate_command
from inventory_actors.cluster.calls import await_outcomes, await_read, unavailable
from inventory_actors.cluster.coordinator import (
    check_client_key,
    place_reservation,
    spans_shards,
)
from inventory_actors.cluster.primary_calls import call_primary, read_primary
from inventory_actors.cluster.replica_sets import (
    PrimaryHandles,
    load_replication,
    start_replica_sets,
)
from inventory_actors.cluster.shard_actor import DEFAULT_NAMESPACE, ShardActor, shard_name
from inventory_actors.cluster.wire import decode_outcomes, encode_submissions
from inventory_actors.domain import (
    AdjustStock,
    Command,
    CommitHold,
    ExtendHold,
    HoldView,
    InvalidCommand,
    LineRequest,
    ReleaseHold,
    ReserveStock,
    Result,
    SetStock,
    SetThreshold,
    SkuView,
    ThresholdView,
    TransferStock,
)
from inventory_actors.domain.thresholds import Alert
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.errors import ShardUnavailable
from inventory_actors.shard.partitioning import (
    PartitionMap,
    load_or_create,
    new_hold_id,
    shard_path,
    slot_of,
)
from inventory_actors.shard.protocol import Outcome, ShardStatus, Submission

CALL_TIMEOUT_SECONDS = 30.0


class Pending:
    """Submitted, not yet answered: one Ray call per shard involved."""

    def __init__(
        self,
        outcomes: list[Outcome | None],
        parts: list[tuple[int, list[int], Any]],
        timeout_seconds: float,
    ) -> None:
        self._outcomes, self._parts, self._timeout = outcomes, parts, timeout_seconds

    def wait(self) -> list[Outcome]:
        for shard_id, indices, ref in self._parts:
            try:
                answer = decode_outcomes(ray.get(ref, timeout=self._timeout))
            except RayError as error:
                answer = [Outcome(unavailable(shard_id, error))] * len(indices)
            self._fill(indices, answer)
        return self._outcomes  # type: ignore[return-value]

    async def wait_async(self) -> list[Outcome]:
        answers = await asyncio.gather(
            *(
                await_outcomes(shard_id, len(indices), ref, self._timeout)
                for shard_id, indices, ref in self._parts
            )
        )
        for (_, indices, _), answer in zip(self._parts, answers, strict=True):
            self._fill(indices, answer)
        return self._outcomes  # type: ignore[return-value]

    def _fill(self, indices: list[int], answer: list[Outcome]) -> None:
        for index, outcome in zip(indices, answer, strict=True):
            self._outcomes[index] = outcome


class InventoryClient:
    """Routes commands and reads to the shard actors of one data directory."""

    def __init__(
        self,
        partition: PartitionMap,
        shards: Sequence[Any],
        call_timeout_seconds: float = CALL_TIMEOUT_SECONDS,
        replicas: Sequence[Any] = (),
    ) -> None:
        """`shards` holds each shard's actor, or for replicated shards looks up each one's
        current primary (`PrimaryHandles`); `replicas` lists every replica actor."""
        self.partition = partition
        self.shards = shards
        self.call_timeout_seconds = call_timeout_seconds
        self.replicas = list(replicas)

    @classmethod
    def connect(
        cls,
        data_dir: Path | str,
        *,
        shard_count: int | None = None,
        namespace: str = DEFAULT_NAMESPACE,
        config: ShardConfig | None = None,
        call_timeout_seconds: float = CALL_TIMEOUT_SECONDS,
        ray_address: str | None = None,
        actor_options: dict[str, Any] | None = None,
    ) -> "InventoryClient":
        """Create the shard actors of `data_dir`, or attach to the running ones.
        `actor_options` adds Ray options to new shards (e.g. resources that place them)."""
        data_dir = Path(data_dir).resolve()
        if not ray.is_initialized():
            ray.init(address=ray_address, namespace=namespace, log_to_driver=False)
        partition = load_or_create(data_dir, shard_count)
        replication = load_replication(data_dir)
        if replication is not None:
            directory, replicas = start_replica_sets(
                replication, partition, config or ShardConfig(), namespace
            )
            handles = PrimaryHandles(directory, partition.shard_count)
            return cls(partition, handles, call_timeout_seconds, replicas)
        shards = [
            ShardActor.options(  # type: ignore[attr-defined]
                name=shard_name(shard_id),
                namespace=namespace,
                lifetime="detached",
                get_if_exists=True,
                **(actor_options or {}),
            ).remote(
                shard_id,
                str(shard_path(data_dir, shard_id)),
                config or ShardConfig(),
                namespace,
                partition,
            )
            for shard_id in range(partition.shard_count)
        ]
        paths = ray.get([shard.ping.remote() for shard in shards], timeout=120)
        for shard_id, path in enumerate(paths):
            if path != str(shard_path(data_dir, shard_id)):
                raise RuntimeError(f"{shard_name(shard_id)} in {namespace!r} serves {path}")
        return cls(partition, shards, call_timeout_seconds)

    # -- routing ---------------------------------------------------------------------------

    def shard_of(self, command: Command) -> int:
        """The shard a client command goes to: the owner (`PartitionMap.owner`) of its SKU,
        or of its hold id for a hold. The shard checks the same (`shard.ownership`)."""
        match command:
            case AdjustStock() | SetStock() | TransferStock() | SetThreshold():
                return self.partition.owner(sku=command.sku)
            case ReserveStock():
                if spans_shards(self.partition, command):
                    raise InvalidCommand(
                        "lines on several shards: place it with `reserve` (the coordinator)"
                    )
                return self.partition.owner(hold=command.hold_id)
            case CommitHold(hold_id) | ReleaseHold(hold_id) | ExtendHold(hold_id, _):
                return self.partition.owner(hold=hold_id)
        raise InvalidCommand(f"{type(command).__name__} cannot be routed")

    def submit(self, submissions: Sequence[Submission], validate: bool = True) -> Pending:
        """Send each submission to its shard, one call per shard, without waiting."""
        groups: dict[int, tuple[list[int], list[Submission]]] = {}
        outcomes: list[Outcome | None] = [None] * len(submissions)
        for index, sub in enumerate(submissions):
            try:
                if validate:
                    validate_command(sub.command)
                check_client_key(sub.idempotency_key)
                shard_id = self.shard_of(sub.command)
            except InvalidCommand as error:
                outcomes[index] = Outcome(error)
                continue
            indices, subs = groups.setdefault(shard_id, ([], []))
            indices.append(index)
            subs.append(sub)
        parts = [
            (shard_id, indices, self.shards[shard_id].execute.remote(encode_submissions(subs)))
            for shard_id, (indices, subs) in groups.items()
        ]
        return Pending(outcomes, parts, self.call_timeout_seconds)

    async def call_shard(
        self,
        shard_id: int,
        submissions: Sequence[Submission],
        request_ids: Sequence[str] = (),
    ) -> list[Outcome]:
        """One call to one shard, awaited. The caller has validated and routed every command
        (see `shard_of`); the HTTP app uses this to send coalesced requests, with the id of
        each one's request for the shard's logs."""
        shards, payload = self.shards, encode_submissions(submissions)
        if isinstance(shards, PrimaryHandles):
            return await call_primary(
                shards,
                shard_id,
                len(submissions),
                lambda handle: handle.execute.remote(payload, request_ids),
                self.call_timeout_seconds,
            )
        ref = shards[shard_id].execute.remote(payload, request_ids)
        return await await_outcomes(shard_id, len(submissions), ref, self.call_timeout_seconds)

    def execute(self, submissions: Sequence[Submission], validate: bool = True) -> list[Outcome]:
        return self.submit(submissions, validate).wait()

    def run(self, command: Command, idempotency_key: str | None = None) -> Result:
        """Execute one command; raise its error if it failed."""
        outcome = self.execute([Submission(command, idempotency_key)])[0]
        if isinstance(outcome.value, Exception):
            raise outcome.value
        return outcome.value

    # -- conveniences ----------------------------------------------------------------------

    def adjust(
        self,
        sku: str,
        location: str,
        delta: int,
        reason: str = "received",
        reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> SkuView:
        view = self.run(AdjustStock(sku, location, delta, reason, reference), idempotency_key)
        assert isinstance(view, SkuView)
        return view

    def set_on_hand(
        self, sku: str, location: str, on_hand: int, idempotency_key: str | None = None
    ) -> SkuView:
        view = self.run(SetStock(sku, location, on_hand), idempotency_key)
        assert isinstance(view, SkuView)
        return view

    def set_threshold(
        self,
        sku: str,
        location: str,
        low_stock_below: int | None,
        idempotency_key: str | None = None,
    ) -> ThresholdView:
        """Alert when `available` falls below `low_stock_below` (None removes the threshold)."""
        view = self.run(SetThreshold(sku, location, low_stock_below), idempotency_key)
        assert isinstance(view, ThresholdView)
        return view

    def reserve(
        self,
        lines: Sequence[LineRequest],
        ttl_seconds: int = 900,
        reference: str | None = None,
        idempotency_key: str | None = None,
    ) -> HoldView:
        """Hold every line or none, on one shard or several. With a key, a retry repeats none of
        the steps that happened, and one after ShardUnavailable finishes the cart (under a new
        reservation id if the first try's lease ended: docs/reservations.md, Retrying)."""
        command = self.reserve_command(lines, ttl_seconds * 1000, reference, idempotency_key)
        validate_command(command)
        outcome = asyncio.run(
            place_reservation(self.call_shard, self.partition, command, key=idempotency_key)
        )
        if isinstance(outcome.value, Exception):
            raise outcome.value
        assert isinstance(outcome.value, HoldView)
        return outcome.value

    @staticmethod
    def reserve_command(
        lines: Sequence[LineRequest],
        ttl_ms: int,
        reference: str | None,
        seed: str | None,
    ) -> ReserveStock:
        """The reservation of `lines`, its id naming the home shard (the first line's)."""
        if not lines:
            raise InvalidCommand("a reservation needs at least one line")
        hold_id = new_hold_id(slot_of(lines[0].sku), None if seed is None else seed.encode())
        return ReserveStock(hold_id, tuple(lines), ttl_ms, reference)

    def commit(self, hold_id: str, idempotency_key: str | None = None) -> HoldView:
        return self._hold(CommitHold(hold_id), idempotency_key)

    def release(self, hold_id: str, idempotency_key: str | None = None) -> HoldView:
        return self._hold(ReleaseHold(hold_id), idempotency_key)

    def extend(self, hold_id: str, ttl_seconds: int) -> HoldView:
        return self._hold(ExtendHold(hold_id, ttl_seconds * 1000), None)

    def _hold(self, command: Command, idempotency_key: str | None) -> HoldView:
        view = self.run(command, idempotency_key)
        assert isinstance(view, HoldView)
        return view

    # -- reads -----------------------------------------------------------------------------

    def get_skus(self, skus: Sequence[str]) -> list[SkuView | None]:
        groups: dict[int, list[int]] = {}
        for index, sku in enumerate(skus):
            groups.setdefault(self.partition.owner(sku=sku), []).append(index)
        refs = {
            shard_id: self.shards[shard_id].get_skus.remote([skus[i] for i in indices])
            for shard_id, indices in groups.items()
        }
        views: list[SkuView | None] = [None] * len(skus)
        for shard_id, indices in groups.items():
            answer = self._read(shard_id, refs[shard_id])
            for index, view in zip(indices, answer, strict=True):
                views[index] = view
        return views

    def get_sku(self, sku: str) -> SkuView | None:
        return self.get_skus([sku])[0]

    def get_hold(self, hold_id: str) -> HoldView | None:
        shard_id = self.partition.owner(hold=hold_id)
        view: HoldView | None = self._read(shard_id, self.shards[shard_id].get_hold.remote(hold_id))
        return view

    async def get_skus_async(self, skus: Sequence[str]) -> list[SkuView | None]:
        groups: dict[int, list[int]] = {}
        for index, sku in enumerate(skus):
            groups.setdefault(self.partition.owner(sku=sku), []).append(index)
        answers = await asyncio.gather(
            *(
                self._read_async(shard_id, _get_skus([skus[i] for i in indices]))
                for shard_id, indices in groups.items()
            )
        )
        views: list[SkuView | None] = [None] * len(skus)
        for indices, answer in zip(groups.values(), answers, strict=True):
            for index, view in zip(indices, answer, strict=True):
                views[index] = view
        return views

    async def get_hold_async(self, hold_id: str) -> HoldView | None:
        shard_id = self.partition.owner(hold=hold_id)
        send = lambda handle: handle.get_hold.remote(hold_id)  # noqa: E731
        view: HoldView | None = await self._read_async(shard_id, send)
        return view

    def get_threshold(self, sku: str, location: str) -> ThresholdView:
        shard_id = self.partition.owner(sku=sku)
        ref = self.shards[shard_id].get_threshold.remote(sku, location)
        view: ThresholdView = self._read(shard_id, ref)
        return view

    async def get_threshold_async(self, sku: str, location: str) -> ThresholdView:
        shard_id = self.partition.owner(sku=sku)
        send = lambda handle: handle.get_threshold.remote(sku, location)  # noqa: E731
        view: ThresholdView = await self._read_async(shard_id, send)
        return view

    def alerts(self) -> list[Alert]:
        """Every shard's low SKU-locations, sorted; ShardUnavailable if any shard is down."""
        refs = [shard.alerts.remote() for shard in self.shards]
        found: list[Alert] = []
        for shard_id, ref in enumerate(refs):
            found += self._read(shard_id, ref)
        return sorted(found)

    async def alerts_async(self, timeout_seconds: float) -> tuple[list[Alert], list[int]]:
        """Every reachable shard's low SKU-locations, sorted, and the ids of the shards that
        did not answer within `timeout_seconds` (their alerts are missing, not absent)."""

        async def one(shard_id: int) -> list[Alert] | None:
            ref = self.shards[shard_id].alerts.remote()
            try:
                alerts: list[Alert] = await await_read(shard_id, ref, timeout_seconds)
            except ShardUnavailable:
                return None
            return alerts

        answers = await asyncio.gather(*(one(i) for i in range(len(self.shards))))
        found = sorted(alert for answer in answers if answer is not None for alert in answer)
        missing = [shard_id for shard_id, answer in enumerate(answers) if answer is None]
        return found, missing

    async def status_async(self, timeout_seconds: float) -> list[ShardStatus | ShardUnavailable]:
        """Every shard's status, each waited for at most `timeout_seconds`."""

        async def one(shard_id: int) -> ShardStatus | ShardUnavailable:
            ref = self.shards[shard_id].status.remote()
            try:
                status: ShardStatus = await await_read(shard_id, ref, timeout_seconds)
            except ShardUnavailable as error:
                return error
            return status

        return list(await asyncio.gather(*(one(i) for i in range(len(self.shards)))))

    def status(self) -> list[ShardStatus | ShardUnavailable]:
        refs = [shard.status.remote() for shard in self.shards]
        answers: list[ShardStatus | ShardUnavailable] = []
        for shard_id, ref in enumerate(refs):
            try:
                answers.append(ray.get(ref, timeout=self.call_timeout_seconds))
            except RayError as error:
                answers.append(unavailable(shard_id, error))
        return answers

    async def _read_async(self, shard_id: int, send: Callable[[Any], Any]) -> Any:
        """`send(handle)` to the shard (its primary, if replicated), awaited."""
        shards = self.shards
        if isinstance(shards, PrimaryHandles):
            return await read_primary(shards, shard_id, send, self.call_timeout_seconds)
        return await await_read(shard_id, send(shards[shard_id]), self.call_timeout_seconds)

    def _read(self, shard_id: int, ref: Any) -> Any:
        try:
            return ray.get(ref, timeout=self.call_timeout_seconds)
        except RayError as error:
            cause = getattr(error, "cause", None)
            if isinstance(cause, ShardUnavailable):
                raise cause from None
            raise unavailable(shard_id, error) from error

    def shutdown(self) -> None:
        """Stop the shard actors for good (their data stays on disk)."""
        for shard in self.replicas or list(self.shards):
            ray.kill(shard, no_restart=True)
        if isinstance(self.shards, PrimaryHandles):
            self.shards.directory.close()


def _get_skus(skus: list[str]) -> Callable[[Any], Any]:
    """A read of `skus` from whichever shard handle it is given."""
    return lambda handle: handle.get_skus.remote(skus)
