"""Durable reservations per second over HTTP, through Ray Serve, measured with wrk.

Scenarios, each against the same Serve instance in the same run:
  noop    a tiny FastAPI ingress (one POST route, small JSON) deployed beside the real app with
          the same actor options: the ceiling of the Serve ingress itself;
  spread  `POST /v1/reservations`, 1 line of 1 unit, SKUs spread over --skus;
  hot     the same, every request on one SKU;
  batch   `POST /v1/batch` with --batch-size reserve operations per request;
  spread-uncoalesced  spread with `calls_in_flight_per_shard` large (one actor call per
          request), to measure what coalescing gains.
Every SKU is stocked first through `POST /v1/batch` (`adjust` operations, admin key). Rate
limits are disabled (`RateLimits.disabled()`), so the figures are of the service, not the
limiter. wrk (apt-get install wrk) drives the load from Lua scripts generated into a temp dir;
its own CPU use is reported, since it shares the machine with the server.

    python -m bench.http_throughput [--quick] [--default-proxy] [--profile]
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import profiling
from bench.common import print_json, print_table, sku_name, source_state
from bench.ports import free_port
from inventory_cli.main import FAST_INGRESS_ENV

ON_HAND = 1_000_000_000
TTL_SECONDS = 60
NOOP_PREFIX = "/noop"
GOAL_SPREAD_SHARE = 0.80
GOAL_HOT_SHARE = 0.95
GOAL_P99_MS = 50.0
GOAL_BATCH_OPS = 100_000

# Lua shared by every scenario: count answers by status, print one JSON line when done.
LUA_COMMON = """
local threads = {}
counts = {}
ops_ok = 0

function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function response(status, headers, body)
  local name = "s" .. status
  counts[name] = (counts[name] or 0) + 1
  if count_ops and status == 200 then
    local _, n = string.gsub(body, '"status":201', "")
    ops_ok = ops_ok + n
  end
end

function done(summary, latency, requests)
  local statuses = {}
  local ok = 0
  for _, thread in ipairs(threads) do
    for name, n in pairs(thread:get("counts")) do
      statuses[name] = (statuses[name] or 0) + n
    end
    ok = ok + thread:get("ops_ok")
  end
  local parts = {}
  for name, n in pairs(statuses) do
    table.insert(parts, string.format('"%s":%d', string.sub(name, 2), n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
    .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
    .. '"latency_us":{"p50":%d,"p75":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f},'
    .. '"statuses":{%s},"ops_ok":%d}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max,
    latency.mean, table.concat(parts, ","), ok))
end
"""

LUA_HEADERS = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""

LUA_STATIC = """
wrk.path = "{path}"
wrk.body = '{body}'
"""

LUA_SPREAD = """
local format = string.format
function init(args)
  math.randomseed(1000 + thread_index)
end
function request()
  local sku = format("sku-%07d", math.random(0, {skus} - 1))
  return wrk.format(nil, "/v1/reservations", nil,
    '{{"lines":[{{"sku":"' .. sku .. '","quantity":1}}],"ttl_seconds":{ttl}}}')
end
"""

LUA_BATCH = """
count_ops = true
local bodies = {{}}
local next_body = 1
function init(args)
  math.randomseed(2000 + thread_index)
  for b = 1, 8 do
    local ops = {{}}
    for i = 1, {size} do
      ops[i] = string.format(
        '{{"op":"reserve","lines":[{{"sku":"sku-%07d","quantity":1}}],"ttl_seconds":{ttl}}}',
        math.random(0, {skus} - 1))
    end
    bodies[b] = '{{"operations":[' .. table.concat(ops, ",") .. ']}}'
  end
end
function request()
  next_body = next_body % #bodies + 1
  return wrk.format(nil, "/v1/batch", nil, bodies[next_body])
end
"""


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk not found: `apt-get install -y wrk` (or `make bench-http`)")
    return found


def post(url: str, key: str, body: object, timeout: float = 120.0) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def wait_ready(url: str, key: str, timeout: float = 120.0) -> None:
    """Until the app answers its readiness route (the proxy may need a moment)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError as error:
            last = error
        time.sleep(0.5)
    raise RuntimeError(f"the app at {url} did not become ready: {last}")


def stock(url: str, key: str, skus: int) -> None:
    for start in range(0, skus, 5_000):
        ops = [
            {"op": "adjust", "sku": sku_name(i), "location": "L01", "delta": ON_HAND}
            | {"reason": "received"}
            for i in range(start, min(skus, start + 5_000))
        ]
        status, body = post(f"{url}/v1/batch", key, {"operations": ops})
        bad = [r for r in body["results"] if r["status"] != 200] if status == 200 else body
        if status != 200 or bad:
            raise RuntimeError(f"stocking failed ({status}): {str(bad)[:400]}")


def our_processes(marker: str) -> list[int]:
    """Pids of this run's processes (descendants of this driver) whose command line names
    `marker`; other agents' clusters on the same machine are never matched."""
    import psutil  # noqa: PLC0415

    pids = []
    for child in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if marker in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


class Cpu:
    """CPU seconds used by a set of processes over an interval."""

    def __init__(self, pids: Sequence[int]) -> None:
        import psutil  # noqa: PLC0415

        self._processes = [psutil.Process(pid) for pid in pids]
        self._start = self._total()

    def _total(self) -> float:
        total = 0.0
        for process in self._processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except Exception:  # a process that ended counts no more
                continue
        return total

    def used(self) -> float:
        return self._total() - self._start


def run_wrk(
    url: str,
    script: Path,
    *,
    threads: int,
    connections: int,
    seconds: float,
    watched: dict[str, list[int]],
) -> dict[str, Any]:
    """One wrk run; its JSON summary plus the CPU wrk and the watched processes used."""
    command = [wrk_binary(), f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s"]
    command += ["--timeout", "10s", "--latency", "-s", str(script), url]
    meters = {name: Cpu(pids) for name, pids in watched.items()}
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = process.communicate()  # reaps wrk: its rusage lands in RUSAGE_CHILDREN
    wall = time.perf_counter() - started
    lines = [x for x in stdout.decode().splitlines() if x.startswith("WRK_JSON ")]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr.decode()[-400:]}")
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("WRK_JSON "))
    result["cpu_percent"] = {name: 100.0 * m.used() / wall for name, m in meters.items()}
    return result


def write_scripts(tmp: Path, key: str, skus: int, batch_size: int) -> dict[str, Path]:
    """The wrk scripts of the scenarios noop, spread, hot and batch, written into `tmp`."""
    headers = LUA_HEADERS.format(key=key)
    one_line = {"lines": [{"sku": sku_name(0), "quantity": 1}], "ttl_seconds": TTL_SECONDS}
    small = json.dumps(one_line, separators=(",", ":"))
    sources = {
        "noop": LUA_STATIC.format(path=f"{NOOP_PREFIX}/noop", body=small),
        "spread": LUA_SPREAD.format(skus=skus, ttl=TTL_SECONDS),
        "hot": LUA_STATIC.format(path="/v1/reservations", body=small),
        "batch": LUA_BATCH.format(skus=skus, ttl=TTL_SECONDS, size=batch_size),
    }
    scripts = {}
    for name, source in sources.items():
        path = tmp / f"{name}.lua"
        path.write_text(LUA_COMMON + headers + source)
        scripts[name] = path
    return scripts


class Runner:
    """Generates the Lua scripts and runs wrk against one Serve instance."""

    def __init__(self, url: str, key: str, args: argparse.Namespace, tmp: Path) -> None:
        self.url, self.key, self.args, self.tmp = url, key, args, tmp
        self.scripts = write_scripts(tmp, key, args.skus, args.batch_size)
        self.watched: dict[str, list[int]] = {}

    def run(self, scenario: str, script: str, seconds: float | None = None) -> dict[str, Any]:
        batch = script == "batch"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        duration = seconds or self.args.seconds
        result = run_wrk(
            self.url,
            self.scripts[script],
            threads=self.args.threads,
            connections=self.args.batch_connections if batch else self.args.connections,
            seconds=duration,
            watched=self.watched,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        wrk_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        seconds_run = result["duration_us"] / 1e6
        result["scenario"] = scenario
        result["per_second"] = result["requests"] / seconds_run
        result["wrk_cpu_percent"] = 100.0 * wrk_cpu / seconds_run
        if batch:
            result["ops_per_second"] = result["ops_ok"] / seconds_run
        return result


def noop_deployment() -> Any:
    """A FastAPI ingress with one POST route, with the real deployment's actor options."""
    from fastapi import FastAPI  # noqa: PLC0415
    from ray import serve  # noqa: PLC0415

    from serve_app.deployment import DEPLOYMENT_OPTIONS  # noqa: PLC0415

    noop = FastAPI()

    @noop.post("/noop")
    async def answer() -> dict[str, str]:
        return {"status": "ok"}

    options = {
        "name": "noop",
        "ray_actor_options": DEPLOYMENT_OPTIONS["ray_actor_options"],
        "max_ongoing_requests": DEPLOYMENT_OPTIONS["max_ongoing_requests"],
        "max_queued_requests": DEPLOYMENT_OPTIONS["max_queued_requests"],
    }

    @serve.deployment(**options)
    @serve.ingress(noop)
    class Noop:
        pass

    return Noop


def summarize(runs: list[dict[str, Any]], key: str = "per_second") -> tuple[float, float, float]:
    values = [r[key] for r in runs]
    return min(values), statistics.median(values), max(values)


def failures_of(run: dict[str, Any], ok: str) -> dict[str, int]:
    """Answers other than `ok`, and socket errors, by kind."""
    bad = {status: n for status, n in run["statuses"].items() if status != ok}
    bad |= {f"socket {k}": n for k, n in run["errors"].items() if k != "status" and n}
    return bad


@dataclass
class ServeStack:
    """A private Ray instance running the shards and the HTTP app, and an admin key."""

    url: str
    key: str
    data_dir: Path
    namespace: str
    shards: int
    replicas: int
    calls_in_flight: int

    def settings(self, calls_in_flight: int, rate_limits: Any = None) -> Any:
        from serve_app.middleware.rate_limit import RateLimits  # noqa: PLC0415
        from serve_app.service import Settings  # noqa: PLC0415

        return Settings(
            data_dir=str(self.data_dir),
            shards=self.shards,
            namespace=self.namespace,
            calls_in_flight_per_shard=calls_in_flight,
            rate_limits=rate_limits or RateLimits.disabled(),
        )

    def redeploy(self, calls_in_flight: int, rate_limits: Any = None) -> None:
        """Deploy the app again: rate limits disabled unless `rate_limits` are given."""
        from serve_app.deployment import deploy  # noqa: PLC0415

        deploy(self.settings(calls_in_flight, rate_limits), num_replicas=self.replicas)
        self.calls_in_flight = calls_in_flight
        wait_ready(self.url, self.key)

    def redeploy_with(self, rate_limits: Any) -> None:
        self.redeploy(self.calls_in_flight, rate_limits)


def private_serve_files() -> Path:
    """Point Serve's HAProxy files and fallback port at this run's own (they default to fixed
    paths and ports, shared with anyone else's Serve on the machine); the directory to remove
    afterwards. Call before Ray starts."""
    # A short directory: HAProxy refuses socket paths over 97 characters.
    haproxy = Path(tempfile.mkdtemp(prefix="hp"))
    for name, file in (("CONFIG_FILE_LOC", "cfg"), ("SOCKET_PATH", "sock")):
        os.environ[f"RAY_SERVE_HAPROXY_{name}"] = str(haproxy / file)
    os.environ["RAY_SERVE_HAPROXY_SERVER_STATE_FILE"] = str(haproxy / "state")
    os.environ["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"] = str(haproxy)
    for port in ("FALLBACK_PROXY_HTTP_PORT", "HAPROXY_STATS_PORT", "HAPROXY_METRICS_PORT"):
        os.environ[f"RAY_SERVE_{port}"] = str(free_port())
    return haproxy


@contextmanager
def serve_stack(shards: int, replicas: int, default_proxy: bool) -> Iterator[ServeStack]:
    """Start Ray, Serve (the fast ingress unless `default_proxy`) and the app with rate limits
    disabled, so the figures are of the service, not the limiter; shut it all down after."""
    # Serve reads these when it is imported and when its actors start: set them first.
    for name, value in FAST_INGRESS_ENV.items():
        if default_proxy and name != "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S":
            os.environ.pop(name, None)
        else:
            os.environ.setdefault(name, value)
    tmp = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    haproxy = private_serve_files()

    import ray  # noqa: PLC0415
    from ray import serve  # noqa: PLC0415

    from bench.common import start_ray  # noqa: PLC0415
    from serve_app.keys import KeyStore  # noqa: PLC0415
    from serve_app.service import Settings  # noqa: PLC0415

    data_dir = tmp / "data"
    data_dir.mkdir()
    first = KeyStore.open(data_dir).initialize()
    assert first is not None
    namespace = f"bench-http-{uuid.uuid4().hex[:8]}"
    url = ""
    for attempt in range(3):
        # A free port can be taken by someone else before HAProxy binds it: try another.
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        start_ray(namespace)
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            break
        except Exception as error:
            ray.shutdown()
            if attempt == 2:
                raise
            print(f"Serve did not start on port {port} ({str(error)[-200:]}); retrying")
    try:
        stack = ServeStack(url, first[1], data_dir, namespace, shards, replicas, 0)
        stack.redeploy(Settings().calls_in_flight_per_shard)
        yield stack
    finally:
        ray.shutdown()  # Serve, its apps and the shards go with this private instance
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(haproxy, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="per wrk run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per scenario")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--batch-connections", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1_000)
    parser.add_argument("--uncoalesced-calls", type=int, default=256)
    parser.add_argument("--no-uncoalesced", action="store_true", help="skip coalescing off")
    parser.add_argument("--default-proxy", action="store_true", help="Serve's default proxy")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="spread",
        choices=["spread", "hot", "batch"],
        help="py-spy the replica during one more run of this scenario (default spread)",
    )
    parser.add_argument("--profile-seconds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="smoke size, under a minute")
    args = parser.parse_args()
    if args.quick:
        args.skus, args.seconds, args.repeats, args.profile = 2_000, 3.0, 1, None
        args.no_uncoalesced = True  # redeploying costs another half minute
    wrk_binary()

    tmp = Path(tempfile.mkdtemp(prefix="bench-http-"))
    runs: dict[str, list[dict[str, Any]]] = {}
    coalescer: dict[str, dict[str, Any]] = {}
    profile_report: dict[str, object] | None = None
    started = time.perf_counter()

    def record(result: dict[str, Any]) -> None:
        runs.setdefault(result["scenario"], []).append(result)
        extra = ""
        if "ops_per_second" in result:
            extra = f", {result['ops_per_second']:,.0f} ops/s"
        print(
            f"  {result['scenario']:<20} {result['per_second']:>8,.0f} req/s{extra}, "
            f"p50 {result['latency_us']['p50'] / 1e3:.1f} ms, "
            f"p99 {result['latency_us']['p99'] / 1e3:.1f} ms, "
            f"wrk {result['wrk_cpu_percent']:.0f}% CPU, statuses {result['statuses']}",
            flush=True,
        )

    with serve_stack(args.shards, args.replicas, args.default_proxy) as stack:
        from ray import serve  # noqa: PLC0415

        from serve_app.deployment import APP_NAME  # noqa: PLC0415

        url, key = stack.url, stack.key
        default_calls = stack.calls_in_flight
        serve.run(
            noop_deployment().options(num_replicas=args.replicas).bind(),
            name="noop",
            route_prefix=NOOP_PREFIX,
        )
        stock(url, key, args.skus)
        runner = Runner(url, key, args, tmp)
        runner.watched = {
            "replica": our_processes(f"ServeReplica:{APP_NAME}"),
            "shards": our_processes("ShardActor"),
        }
        print(f"Stocked {args.skus:,} SKUs in {time.perf_counter() - started:.0f} s; runs:")
        runner.run("warm-up", "spread", 2.0)
        runner.run("warm-up", "batch", 2.0)
        for _ in range(args.repeats):
            for scenario in ("noop", "spread", "hot", "batch"):
                record(runner.run(scenario, scenario))
        if args.profile:
            profile_report = profile_replica(runner, args.profile, args.profile_seconds)
        coalescer["coalesced"] = {"calls_in_flight_per_shard": default_calls}
        if not args.no_uncoalesced:
            stack.redeploy(args.uncoalesced_calls)
            runner.watched["replica"] = our_processes(f"ServeReplica:{APP_NAME}")
            runner.run("warm-up", "spread", 2.0)
            for _ in range(args.repeats):
                record(runner.run("noop", "noop"))
                record(runner.run("spread-uncoalesced", "spread"))
            coalescer["uncoalesced"] = {"calls_in_flight_per_shard": args.uncoalesced_calls}
    shutil.rmtree(tmp, ignore_errors=True)
    report(args, runs, coalescer, profile_report, time.perf_counter() - started)


def profile_replica(runner: Runner, scenario: str, seconds: int) -> dict[str, object]:
    """One more run of `scenario` while py-spy samples the replica process."""
    pids = runner.watched["replica"]
    if not pids:
        return {"error": "replica process not found"}
    recording = profiling.start_recording(pids[0], seconds)
    if recording is None:
        return {"error": "py-spy not found; pip install py-spy"}
    time.sleep(1.0)
    result = runner.run(f"profiled {scenario}", scenario, seconds)
    stacks = profiling.finish_recording(recording)
    if isinstance(stacks, str):
        print(f"\npy-spy on the replica failed: {stacks}")
        return {"error": stacks}
    print(f"\nProfiled {scenario} run: {result['per_second']:,.0f} req/s under py-spy")
    shares = profiling.categorize(stacks, profiling.REPLICA_CATEGORIES)
    print(f"\nProfile of the replica ({sum(stacks.values())} samples), by category:")
    print_table(["category", "samples", "%"], shares)
    print("\nInclusive time of the replica's main steps:")
    print_table(["function", "samples", "%"], profiling.inclusive(stacks, profiling.REPLICA_STEPS))
    print("\nTop frames (self time) of the replica:")
    print_table(["frame", "samples", "%"], profiling.top_functions(stacks, 20))
    return {"scenario": scenario} | {name: round(share, 1) for name, _, share in shares}


def report(
    args: argparse.Namespace,
    runs: dict[str, list[dict[str, Any]]],
    coalescer: dict[str, dict[str, Any]],
    profile_report: dict[str, object] | None,
    seconds: float,
) -> None:
    rows: list[list[object]] = []
    failures: dict[str, dict[str, int]] = {}
    for scenario, results in runs.items():
        low, mid, high = summarize(results)
        p50 = statistics.median(r["latency_us"]["p50"] / 1e3 for r in results)
        p99s = [r["latency_us"]["p99"] / 1e3 for r in results]
        wrk_cpu = statistics.median(r["wrk_cpu_percent"] for r in results)
        ops = "-"
        if scenario == "batch":
            ops_low, ops_mid, ops_high = summarize(results, "ops_per_second")
            ops = f"{ops_mid:,.0f} ({ops_low:,.0f}-{ops_high:,.0f})"
        ok = "200" if scenario in ("noop", "batch") else "201"
        bad: dict[str, int] = {}
        for result in results:
            for kind, n in failures_of(result, ok).items():
                bad[kind] = bad.get(kind, 0) + n
        if bad:
            failures[scenario] = bad
        rows.append(
            [
                scenario,
                len(results),
                f"{mid:,.0f} ({low:,.0f}-{high:,.0f})",
                ops,
                p50,
                f"{statistics.median(p99s):.1f} ({min(p99s):.1f}-{max(p99s):.1f})",
                f"{wrk_cpu:.0f}%",
                sum(r["requests"] for r in results),
                sum(bad.values()),
            ]
        )
    proxy = "default proxy" if args.default_proxy else "HAProxy + throughput-optimized"
    print(
        f"\nHTTP through Ray Serve ({proxy}), {args.shards} shards, {args.replicas} replica(s), "
        f"wrk -t{args.threads} -c{args.connections} (batch -c{args.batch_connections}) "
        f"-d{args.seconds:g}s, rate limits disabled; median (min-max) of the runs"
    )
    headers = ["scenario", "runs", "requests/s", "batch ops/s", "p50 ms", "p99 ms (range)"]
    headers += ["wrk CPU", "requests", "failures"]
    print_table(headers, rows)
    for scenario, bad in failures.items():
        print(f"NOT OK answers in {scenario}: {bad}")

    def median(scenario: str, key: str = "per_second") -> float:
        results = runs.get(scenario, [])
        return statistics.median(r[key] for r in results) if results else 0.0

    def p99(scenario: str) -> float:
        results = runs.get(scenario, [])
        return statistics.median(r["latency_us"]["p99"] / 1e3 for r in results) if results else 0

    noop, spread, hot = median("noop"), median("spread"), median("hot")
    batch_ops = median("batch", "ops_per_second")
    goals = {
        "spread_vs_noop": (spread / noop if noop else 0.0, spread >= GOAL_SPREAD_SHARE * noop),
        "spread_p99_ms": (p99("spread"), p99("spread") <= GOAL_P99_MS),
        "hot_vs_spread": (hot / spread if spread else 0.0, hot >= GOAL_HOT_SHARE * spread),
        "hot_p99_ms": (p99("hot"), p99("hot") <= GOAL_P99_MS),
        "batch_ops_per_second": (batch_ops, batch_ops >= GOAL_BATCH_OPS),
    }
    print("\nGoals (medians):")
    texts = {
        "spread_vs_noop": f">= {GOAL_SPREAD_SHARE:.0%} of no-op",
        "spread_p99_ms": f"spread p99 <= {GOAL_P99_MS:g} ms",
        "hot_vs_spread": f"hot SKU >= {GOAL_HOT_SHARE:.0%} of spread",
        "hot_p99_ms": f"hot SKU p99 <= {GOAL_P99_MS:g} ms",
        "batch_ops_per_second": f">= {GOAL_BATCH_OPS:,} batch ops/s",
    }
    for name, (value, met) in goals.items():
        shown = f"{value:.0%}" if name.endswith("_vs_noop") or "vs" in name else f"{value:,.1f}"
        print(f"  {texts[name]:<32} {shown:>10}  {'MET' if met else 'NOT met'}")
    if "spread-uncoalesced" in runs:
        off = median("spread-uncoalesced")
        gain = spread / off if off else 0.0
        print(f"  coalescing gain (spread, default vs one call per request): x{gain:.2f}")
        coalescer["gain"] = {"spread_over_uncoalesced": round(gain, 3)}
    figures: dict[str, object] = {"source": source_state(), "seconds": round(seconds, 1)}
    figures["config"] = {
        "proxy": "default" if args.default_proxy else "haproxy+throughput_optimized",
        "shards": args.shards,
        "replicas": args.replicas,
        "skus": args.skus,
        "wrk": f"-t{args.threads} -c{args.connections} -d{args.seconds:g}s",
        "batch_connections": args.batch_connections,
        "batch_size": args.batch_size,
        "rate_limits": "disabled",
        "cpus": os.cpu_count(),
    }
    figures["runs"] = {
        scenario: [
            {
                "per_second": round(r["per_second"], 1),
                "ops_per_second": round(r.get("ops_per_second", 0.0), 1),
                "latency_ms": {k: v / 1e3 for k, v in r["latency_us"].items()},
                "statuses": r["statuses"],
                "errors": r["errors"],
                "wrk_cpu_percent": round(r["wrk_cpu_percent"], 1),
                "cpu_percent": {k: round(v, 1) for k, v in r["cpu_percent"].items()},
            }
            for r in results
        ]
        for scenario, results in runs.items()
    }
    figures["goals"] = {name: {"value": v, "met": met} for name, (v, met) in goals.items()}
    figures["coalescing"] = coalescer
    figures["failures"] = failures
    if profile_report is not None:
        figures["profile"] = profile_report
    print_json("http_throughput", figures)


if __name__ == "__main__":
    main()
