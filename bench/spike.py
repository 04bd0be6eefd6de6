"""An open-loop load with a spike (a steady rate, ten times that, the steady rate again):
requests leave on a schedule, not when the previous answer came back. The client is lean, as it
shares the machine with the server, and reports whether it kept to its schedule
(`generator_late_p99_ms`); docs/performance.md (S7) says more.
"""

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, astuple, dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

# Requests in flight at most: past this the generator itself counts an arrival as dropped
# (never sent), so the generator cannot queue without bound either.
IN_FLIGHT_MAX = 4_000
REQUEST_TIMEOUT_SECONDS = 30.0
ROOT = Path(__file__).resolve().parent.parent
# Ray's setting of its workers' niceness (the server's processes run at it).
WORKER_NICENESS_VARIABLE = "RAY_worker_niceness"
PROBLEM_MEDIA_TYPE = b"application/problem+json"


@dataclass
class Answer:
    phase: str
    status: int  # 0: no answer (connection error or timeout)
    seconds: float
    retry_after: bool
    # The body is a problem (`application/problem+json`).
    problem: bool = False
    # How long after its scheduled time the request left (the generator's own delay).
    late_seconds: float = 0.0
    # When the request left, in seconds since the load began.
    at_seconds: float = 0.0
    # A 2xx answer's body, when asked for (`keep_bodies`).
    body: bytes = b""


@dataclass
class SpikeResult:
    answers: list[Answer] = field(default_factory=list)
    dropped: int = 0
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        late = [a.late_seconds * 1e3 for a in self.answers]
        figures: dict[str, Any] = {
            "dropped_by_client": self.dropped,
            "generator_late_p99_ms": round(percentile(late, 99), 1),
        }
        for phase, seconds in self.phase_seconds.items():
            mine = [a for a in self.answers if a.phase == phase]
            accepted = [a.seconds * 1e3 for a in mine if 200 <= a.status < 300]
            rejected = [a for a in mine if a.status in (429, 503)]
            figures[phase] = {
                "offered_rps": round(len(mine) / seconds, 1),
                "accepted_rps": round(len(accepted) / seconds, 1),
                "accepted_p50_ms": round(percentile(accepted, 50), 1),
                "accepted_p99_ms": round(percentile(accepted, 99), 1),
                "rejected": len(rejected),
                "rejected_429": sum(1 for a in rejected if a.status == 429),
                "rejected_p99_ms": round(percentile([a.seconds * 1e3 for a in rejected], 99), 1),
                "rejected_without_retry_after": sum(1 for a in rejected if not a.retry_after),
                "rejected_not_problem": sum(1 for a in rejected if not a.problem),
                "other_failures": sum(
                    1 for a in mine if not 200 <= a.status < 300 and a.status not in (429, 503)
                ),
            }
        return figures


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


class _Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Response] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is None or self._waiter.done():
            return
        try:
            response = _parse(self._buffer)
        except ValueError as error:
            self._waiter.set_exception(ConnectionError(str(error)))
            return
        if response is not None:
            self._buffer.clear()
            self._waiter.set_result(response)

    async def exchange(self, request: bytes) -> _Response:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _parse(buffer: bytearray) -> _Response | None:
    """A whole response from the start of `buffer`, or None while parts are missing."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buffer[:end]).split(b"\r\n")
    status = int(head[0].split(b" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    start = end + 4
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = bytearray()
        at = start
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                return None
            size = int(bytes(buffer[at:line_end]).split(b";")[0], 16)
            if len(buffer) < line_end + 2 + size + 2:
                return None
            body += buffer[line_end + 2 : line_end + 2 + size]
            at = line_end + 2 + size + 2
            if size == 0:
                return _Response(status, headers, bytes(body))
    length = int(headers.get(b"content-length", b"0"))
    if len(buffer) < start + length:
        return None
    return _Response(status, headers, bytes(buffer[start : start + length]))


class _Client:
    """POSTs to one host over a pool of keep-alive connections."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path or "/"
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}"
            "Content-Type: application/json\r\n"
        ).encode()
        self._idle: list[_Connection] = []

    async def post(self, body: bytes) -> _Response:
        request = self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        connection = None
        while self._idle and connection is None:
            candidate = self._idle.pop()
            connection = None if candidate.closed else candidate
        if connection is None:
            loop = asyncio.get_running_loop()
            _, connection = await loop.create_connection(_Connection, self.host, self.port)
        try:
            response = await connection.exchange(request)
        except BaseException:
            connection.close()
            raise
        if response.headers.get(b"connection", b"").lower() == b"close":
            connection.close()
        else:
            self._idle.append(connection)
        return response

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()


@dataclass(frozen=True)
class ReservationLoad:
    """The spike of one-line, one-unit reservations over `skus`, as a child process runs it."""

    url: str
    headers: dict[str, str]
    skus: list[str]
    steady_rps: float
    factor: float = 10.0
    phase_seconds: float = 5.0
    ttl_seconds: int = 3600
    # Keep the body of every 2xx answer (to check afterwards what was accepted).
    keep_bodies: bool = False
    # One unit of each of this many consecutive SKUs per reservation (over several shards, a
    # reservation takes several shard round trips).
    lines: int = 1

    def body_of(self, index: int) -> dict[str, Any]:
        first = index * self.lines
        lines = [
            {"sku": self.skus[(first + n) % len(self.skus)], "quantity": 1}
            for n in range(self.lines)
        ]
        return {"lines": lines, "ttl_seconds": self.ttl_seconds}


def run_in_child(load: ReservationLoad, niceness: int | None = None) -> SpikeResult:
    """`load` from a child process (`python -m bench.spike`), on uvloop when installed, at
    the niceness of Ray's workers (15 unless `RAY_worker_niceness` says otherwise): the
    generator then takes the CPU it shares with the server on equal terms, rather than first
    (a client on another machine would take none), and shares no interpreter with the driver."""
    if niceness is None:
        niceness = int(os.environ.get(WORKER_NICENESS_VARIABLE, "15"))
    request = json.dumps({"load": asdict(load), "niceness": niceness})
    timeout = 3 * load.phase_seconds + REQUEST_TIMEOUT_SECONDS + 60
    done = subprocess.run(
        [sys.executable, "-m", "bench.spike"],
        input=request,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}): {done.stderr[-800:]}")
    figures = json.loads(done.stdout)
    result = SpikeResult(dropped=figures["dropped"], phase_seconds=figures["phase_seconds"])
    for phase, status, seconds, retry, problem, late, at, body in figures["answers"]:
        answer = Answer(phase, status, seconds, retry, problem, late, at, body.encode("utf-8"))
        result.answers.append(answer)
    return result


def main() -> None:
    """The child's side of `run_in_child`: the load on stdin, the answers on stdout."""
    request = json.load(sys.stdin)
    os.nice(max(0, request["niceness"] - os.nice(0)))
    load = ReservationLoad(**request["load"])
    spike = run_spike(
        load.url,
        load.headers,
        load.body_of,
        steady_rps=load.steady_rps,
        factor=load.factor,
        phase_seconds=load.phase_seconds,
        keep_bodies=load.keep_bodies,
    )
    try:
        import uvloop  # noqa: PLC0415

        result = uvloop.run(spike)
    except ImportError:
        result = asyncio.run(spike)
    answers = [[*astuple(a)[:-1], a.body.decode("utf-8", errors="replace")] for a in result.answers]
    figures = {"dropped": result.dropped, "phase_seconds": result.phase_seconds}
    json.dump(figures | {"answers": answers}, sys.stdout)


async def run_spike(
    url: str,
    headers: dict[str, str],
    body_of: Callable[[int], dict[str, Any]],
    *,
    steady_rps: float,
    factor: float,
    phase_seconds: float,
    keep_bodies: bool = False,
) -> SpikeResult:
    """POST `body_of(i)` to `url` at `steady_rps`, then `factor` times that, then steady.
    `keep_bodies` keeps the body of every 2xx answer (to check afterwards what was accepted)."""
    result = SpikeResult()
    phases = [
        ("steady", steady_rps),
        ("spike", steady_rps * factor),
        ("after", steady_rps),
    ]
    client = _Client(url, headers)
    tasks: set[asyncio.Task[None]] = set()
    origin = time.perf_counter()

    async def one(index: int, phase: str, due: float) -> None:
        started = time.perf_counter()
        status, retry, problem, kept = 0, False, False, b""
        try:
            body = json.dumps(body_of(index), separators=(",", ":")).encode()
            async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
                answer = await client.post(body)
            status = answer.status
            retry = b"retry-after" in answer.headers
            problem = answer.headers.get(b"content-type", b"").startswith(PROBLEM_MEDIA_TYPE)
            if keep_bodies and 200 <= status < 300:
                kept = answer.body
        except (OSError, TimeoutError, ValueError):
            pass
        seconds = time.perf_counter() - started
        result.answers.append(
            Answer(phase, status, seconds, retry, problem, started - due, started - origin, kept)
        )

    index = 0
    try:
        for phase, rate in phases:
            started = time.perf_counter()
            sent = 0
            while (elapsed := time.perf_counter() - started) < phase_seconds:
                due = int(elapsed * rate)
                while sent < due:
                    if len(tasks) >= IN_FLIGHT_MAX:
                        result.dropped += 1
                    else:
                        task = asyncio.create_task(one(index, phase, started + sent / rate))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                    sent += 1
                    index += 1
                await asyncio.sleep(0.001)
            result.phase_seconds[phase] = time.perf_counter() - started
        if tasks:
            await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT_SECONDS + 5)
    finally:
        client.close()
    return result


if __name__ == "__main__":
    main()
