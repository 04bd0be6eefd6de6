"""An open-loop load with a spike: requests leave on a schedule (not when the previous answer
came back), so a server that slows down meets the same arrivals, as it would from real clients.

Three phases: a steady rate, ten times that rate, the steady rate again. Every request is
recorded with its phase, status and latency; the caller checks afterwards that every accepted
change is in the service (nothing acknowledged lost)."""

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# Requests in flight at most: past this the generator itself counts an arrival as dropped
# (never sent), so the generator cannot queue without bound either.
IN_FLIGHT_MAX = 4_000
REQUEST_TIMEOUT_SECONDS = 30.0


@dataclass
class Answer:
    phase: str
    status: int  # 0: no answer (connection error or timeout)
    seconds: float
    retry_after: bool


@dataclass
class SpikeResult:
    answers: list[Answer] = field(default_factory=list)
    dropped: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        figures: dict[str, Any] = {"dropped_by_client": self.dropped}
        for phase, seconds in self.phase_seconds.items():
            mine = [a for a in self.answers if a.phase == phase]
            accepted = [a.seconds * 1e3 for a in mine if 200 <= a.status < 300]
            rejected = [a for a in mine if a.status in (429, 503)]
            figures[phase] = {
                "offered_rps": round(len(mine) / seconds, 1),
                "accepted_rps": round(len(accepted) / seconds, 1),
                "accepted_p50_ms": round(_percentile(accepted, 50), 1),
                "accepted_p99_ms": round(_percentile(accepted, 99), 1),
                "rejected": len(rejected),
                "rejected_p99_ms": round(_percentile([a.seconds * 1e3 for a in rejected], 99), 1),
                "rejected_without_retry_after": sum(1 for a in rejected if not a.retry_after),
                "other_failures": sum(
                    1 for a in mine if not 200 <= a.status < 300 and a.status not in (429, 503)
                ),
            }
        return figures


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


async def run_spike(
    url: str,
    headers: dict[str, str],
    body_of: Callable[[int], dict[str, Any]],
    *,
    steady_rps: float,
    factor: float,
    phase_seconds: float,
) -> SpikeResult:
    """POST `body_of(i)` to `url` at `steady_rps`, then `factor` times that, then steady."""
    result = SpikeResult()
    phases = [
        ("steady", steady_rps),
        ("spike", steady_rps * factor),
        ("after", steady_rps),
    ]
    connector = aiohttp.TCPConnector(limit=IN_FLIGHT_MAX, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(index: int, phase: str) -> None:
            started = time.perf_counter()
            try:
                async with session.post(url, json=body_of(index), headers=headers) as answer:
                    await answer.read()
                    status, retry = answer.status, "Retry-After" in answer.headers
            except (aiohttp.ClientError, TimeoutError):
                status, retry = 0, False
            result.answers.append(Answer(phase, status, time.perf_counter() - started, retry))

        index = 0
        for phase, rate in phases:
            started = time.perf_counter()
            sent = 0
            while (elapsed := time.perf_counter() - started) < phase_seconds:
                due = int(elapsed * rate)
                while sent < due:
                    if len(tasks) >= IN_FLIGHT_MAX:
                        result.dropped += 1
                    else:
                        task = asyncio.create_task(one(index, phase))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    sent += 1
                    index += 1
                await asyncio.sleep(0.001)
            result.phase_seconds[phase] = time.perf_counter() - started
        if tasks:
            await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_SECONDS + 5)
    return result
