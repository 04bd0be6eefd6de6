"""wrk, the load generator of the HTTP benchmarks: the Lua scripts of their scenarios, one run
with its JSON summary, and the CPU that the watched processes used meanwhile."""

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import sku_name
from bench.stack import NOOP_PREFIX

TTL_SECONDS = 60

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


def our_processes(marker: str) -> list[int]:
    """Pids of this run's processes (descendants of this driver) whose command line names
    `marker`; other runs' clusters on the same machine are never matched."""
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
