"""Probe writers of a replicated chaos run, and the failover figures drawn from them.

One probe per shard adds 1 to a SKU of that shard's own over HTTP every 50 ms with a fresh
idempotency key, and sends a write answered 5xx (or not at all) again with its key until it is
answered. Each write is an `adjust` op of the run's history, so the checker holds the probes to
what it holds every client to: each acknowledged add is in the feed once and in the final stock.
Every attempt is timed: the first acknowledged write on a shard after a fault that hit its
primary is its failover time, and an attempt that failed on a shard the fault did not touch is
counted."""

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from chaos.history import FaultRecord, Kind, Op, Outcome
from chaos.workload import LOCATIONS, Request, Shared, send, send_again
from inventory_actors.shard.partitioning import PartitionMap

PROBE_GAP_SECONDS = 0.05
# Client ids of the probes: past any client's.
PROBE_CLIENT_BASE = 10_000
# Refusals a write may get from the domain (not failures of the service): short stock, a
# reservation already ended, a reused key.
DOMAIN_REFUSALS = frozenset({409, 422})
# Names tried per shard for its probe SKU.
PROBE_NAMES_MAX = 100_000


@dataclass(frozen=True)
class Timed:
    """One attempt of a write: when it was sent and answered (run seconds), and its status."""

    started: float
    ended: float
    status: int

    @property
    def acknowledged(self) -> bool:
        return 200 <= self.status < 300

    @property
    def failed(self) -> bool:
        return not self.acknowledged and self.status not in DOMAIN_REFUSALS


@dataclass
class Probes:
    """The probe writers of every shard, and every attempt they and the clients made."""

    shared: Shared
    partition: PartitionMap
    seed: int
    skus: dict[int, str] = field(default_factory=dict)
    attempts: dict[int, list[Timed]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for shard in range(self.partition.shard_count):
            self.skus[shard] = self._sku_of(shard)
            self.attempts[shard] = []

    def _sku_of(self, shard: int) -> str:
        for n in range(PROBE_NAMES_MAX):
            name = f"PROBE-{self.seed}-{shard}-{n}"
            if self.partition.owner(sku=name) == shard:
                return name
        raise RuntimeError(f"no probe SKU found for shard {shard}")

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        await asyncio.gather(*(self._write(session, shard, stop) for shard in self.skus))

    async def _write(self, session: aiohttp.ClientSession, shard: int, stop: asyncio.Event) -> None:
        sku, count = self.skus[shard], 0
        while not stop.is_set():
            count += 1
            body = {
                "location": LOCATIONS[0],
                "delta": 1,
                "reason": "correction",
                "reference": f"probe-{self.seed}-{shard}-{count}",
            }
            request = Request("POST", f"/v1/skus/{sku}/adjustments", body)
            op = self.shared.new_op(PROBE_CLIENT_BASE + shard, Kind.ADJUST, request)
            answer = await send(session, op.method, op.path, op.body, op.key)
            op.record(*answer, self.shared.now())
            self._note(shard, op.started, op.ended, op.status)
            while op.final_outcome is Outcome.UNKNOWN and not stop.is_set():
                await asyncio.sleep(PROBE_GAP_SECONDS)
                attempt = await send_again(session, op, self.shared.now, after_load=False)
                self._note(shard, attempt.started, attempt.ended, attempt.status)
            await asyncio.sleep(PROBE_GAP_SECONDS)

    def _note(self, shard: int, started: float, ended: float, status: int) -> None:
        self.attempts[shard].append(Timed(started, ended, status))

    def client_writes(self, ops: Iterable[Op]) -> None:
        """Add the clients' writes to a single shard (adjustments, transfers) to the attempts."""
        for op in ops:
            if op.kind not in (Kind.ADJUST, Kind.TRANSFER) or op.client >= PROBE_CLIENT_BASE:
                continue
            shard = self.partition.owner(sku=op.path.split("/")[3])
            for attempt in op.attempts():
                self._note(shard, attempt.started, attempt.ended, attempt.status)

    def first_ack_after(self, shard: int, moment: float) -> float | None:
        """Seconds from `moment` to the first acknowledged write on `shard` sent after it."""
        acks = [t.ended for t in self.attempts[shard] if t.acknowledged and t.started >= moment]
        return min(acks) - moment if acks else None

    def failures(self, shards: Iterable[int], since: float, until: float) -> list[Timed]:
        """Failed attempts on `shards` sent between `since` and `until`."""
        return [
            t
            for shard in shards
            for t in self.attempts[shard]
            if t.failed and since <= t.started <= until
        ]


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile of `values` (not empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def failover_figures(
    faults: list[FaultRecord], probes: Probes, kinds: Iterable[str], load_seconds: float
) -> dict[str, Any]:
    """Per kind, the failover times (p50, p99, max, each sample) of the shards whose primary it
    hit, the failed writes on the shards it did not touch, and the times back to full replica
    sets; a fault not injected is left out."""
    figures: dict[str, Any] = {}
    for kind in kinds:
        done = [f for f in faults if f.kind == kind and "not injected" not in f.detail]
        samples: list[float] = []
        unmeasured = 0
        untouched: list[dict[str, Any]] = []
        for fault in done:
            for shard in fault.primary_shards:
                found = probes.first_ack_after(shard, fault.at)
                if found is None:
                    unmeasured += 1
                else:
                    samples.append(round(found, 3))
            until = fault.whole_at if fault.whole_at is not None else load_seconds
            failed = probes.failures(fault.untouched_shards, fault.at, until)
            untouched.append(
                {
                    "at": round(fault.at, 3),
                    "shards": fault.untouched_shards,
                    "failed_writes": len(failed),
                    "statuses": sorted({t.status for t in failed}),
                }
            )
        back = [round(f.whole_at - f.at, 3) if f.whole_at is not None else None for f in done]
        figures[kind] = {
            "faults": len(done),
            "failover_seconds": _spread(samples),
            "failover_samples": samples,
            "failover_unmeasured": unmeasured,
            "untouched_failed_writes": sum(u["failed_writes"] for u in untouched),
            "untouched": untouched,
            "back_to_full_seconds": back,
            "back_to_full_seconds_max": max((b for b in back if b is not None), default=None),
            "not_back_to_full": sum(1 for b in back if b is None),
        }
    return figures


def _spread(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": percentile(samples, 0.5),
        "p99": percentile(samples, 0.99),
        "max": max(samples),
    }
