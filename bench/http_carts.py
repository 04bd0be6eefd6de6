"""Carts per second over HTTP: five-line carts, one line per shard, reserved then committed;
each wrk connection alternates a new cart and the commit of its last (docs/http-benchmark.md).

    python -m bench.http_carts [--quick] [--shards 5] [--connections 64]
"""

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import print_json, print_table, sku_name, source_state
from bench.stack import serve_stack, stock
from bench.wrk import LUA_COMMON, LUA_HEADERS, TTL_SECONDS, our_processes, run_wrk, wrk_binary
from inventory_actors.shard.partitioning import PartitionMap

GOAL_CARTS_PER_SECOND = 1_000
CART_LINES = 5

# One pending commit per connection at most: wrk asks for the next request of a connection
# right after its response, so a thread-wide stack of placed carts is drained in time.
LUA_CARTS = """
local format, concat = string.format, table.concat
local placed = {{}}
carts_ok = 0
local shard_skus = {{ {shard_skus} }}
function init(args)
  math.randomseed(3000 + thread_index)
end
function request()
  local id = table.remove(placed)
  if id then
    return wrk.format(nil, "/v1/reservations/" .. id .. "/commit", nil, "")
  end
  local lines = {{}}
  for s = 1, #shard_skus do
    local skus = shard_skus[s]
    lines[s] = format('{{"sku":"%s","quantity":1}}', skus[math.random(#skus)])
  end
  return wrk.format(nil, "/v1/reservations", nil,
    '{{"lines":[' .. concat(lines, ",") .. '],"ttl_seconds":{ttl}}}')
end
function response(status, headers, body)
  local name = "s" .. status
  counts[name] = (counts[name] or 0) + 1
  if status == 201 then
    local id = string.match(body, '"reservation_id":"([^"]+)"')
    if id then table.insert(placed, id) end
  elseif status == 200 then
    ops_ok = ops_ok + 1
  end
end
"""


def skus_by_shard(partition: PartitionMap, skus: int, shards: int) -> list[list[str]]:
    """The stocked SKU names grouped by their shard; a cart takes one from each of `shards`."""
    groups: list[list[str]] = [[] for _ in range(partition.shard_count)]
    for index in range(skus):
        name = sku_name(index)
        groups[partition.owner(sku=name)].append(name)
    return groups[:shards]


def lua_script(groups: list[list[str]], key: str) -> str:
    arrays = ", ".join("{" + ",".join(f'"{name}"' for name in group) + "}" for group in groups)
    return (
        LUA_COMMON
        + LUA_HEADERS.format(key=key)
        + LUA_CARTS.format(shard_skus=arrays, ttl=TTL_SECONDS)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skus", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=CART_LINES)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=10.0, help="per wrk run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--calls-in-flight", type=int, help="actor calls in flight per shard (default: the app's)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke size, under a minute")
    args = parser.parse_args()
    if args.quick:
        args.skus, args.seconds, args.repeats = 2_000, 3.0, 1
    if args.shards < CART_LINES:
        print(f"note: {args.shards} shards, so a {CART_LINES}-line cart spans {args.shards}")
    wrk_binary()
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with serve_stack(args.shards, args.replicas, default_proxy=False) as stack:
        from inventory_actors.shard.partitioning import load_or_create  # noqa: PLC0415

        if args.calls_in_flight is not None:
            stack.redeploy(args.calls_in_flight)
        stock(stack.url, stack.key, args.skus)
        partition = load_or_create(stack.data_dir, args.shards)
        groups = skus_by_shard(partition, args.skus, CART_LINES)
        script = Path(tempfile.mkdtemp(prefix="bench-carts-")) / "carts.lua"
        script.write_text(lua_script(groups, stack.key))
        watched = {
            "replica": our_processes("ServeReplica:"),
            "shards": our_processes("ShardActor"),
        }
        print(f"Stocked {args.skus:,} SKUs in {time.perf_counter() - started:.0f} s; runs:")

        def run(seconds: float) -> dict[str, Any]:
            result = run_wrk(
                stack.url,
                script,
                threads=args.threads,
                connections=args.connections,
                seconds=seconds,
                watched=watched,
            )
            duration_s = result["duration_us"] / 1e6
            result["carts_per_second"] = result["ops_ok"] / duration_s
            result["requests_per_second"] = result["requests"] / duration_s
            return result

        run(2.0)  # warm-up
        for _ in range(args.repeats):
            result = run(args.seconds)
            results.append(result)
            print(
                f"  {result['carts_per_second']:>7,.0f} carts/s "
                f"({result['requests_per_second']:,.0f} req/s), "
                f"p50 {result['latency_us']['p50'] / 1e3:.1f} ms, "
                f"p99 {result['latency_us']['p99'] / 1e3:.1f} ms, statuses {result['statuses']}, "
                f"CPU { ({k: round(v) for k, v in result['cpu_percent'].items()}) }",
                flush=True,
            )
    report(args, results, time.perf_counter() - started)


def report(args: argparse.Namespace, results: list[dict[str, Any]], seconds: float) -> None:
    carts = sorted(r["carts_per_second"] for r in results)
    p50s = [r["latency_us"]["p50"] / 1e3 for r in results]
    p99s = [r["latency_us"]["p99"] / 1e3 for r in results]
    bad = {
        status: n
        for r in results
        for status, n in r["statuses"].items()
        if status not in ("200", "201")
    }
    print(
        f"\n{CART_LINES}-line carts over {min(args.shards, CART_LINES)} shards, reserve then "
        f"commit, {args.replicas} replica(s), wrk -t{args.threads} -c{args.connections} "
        f"-d{args.seconds:g}s, rate limits disabled"
    )
    print_table(
        ["carts/s median (range)", "request p50 ms", "request p99 ms", "failures"],
        [
            [
                f"{statistics.median(carts):,.0f} ({carts[0]:,.0f}-{carts[-1]:,.0f})",
                f"{statistics.median(p50s):.1f}",
                f"{statistics.median(p99s):.1f}",
                sum(bad.values()),
            ]
        ],
    )
    met = statistics.median(carts) >= GOAL_CARTS_PER_SECOND
    print(f"Goal >= {GOAL_CARTS_PER_SECOND:,} carts/s: {'MET' if met else 'NOT met'}")
    print_json(
        "http_carts",
        {
            "source": source_state(),
            "seconds": round(seconds, 1),
            "config": {
                "shards": args.shards,
                "replicas": args.replicas,
                "skus": args.skus,
                "wrk": f"-t{args.threads} -c{args.connections} -d{args.seconds:g}s",
                "cpus": os.cpu_count(),
            },
            "runs": [
                {
                    "carts_per_second": round(r["carts_per_second"], 1),
                    "requests_per_second": round(r["requests_per_second"], 1),
                    "latency_ms": {k: v / 1e3 for k, v in r["latency_us"].items()},
                    "statuses": r["statuses"],
                    "errors": r["errors"],
                    "cpu_percent": {k: round(v, 1) for k, v in r["cpu_percent"].items()},
                }
                for r in results
            ],
            "goal_met": met,
            "failures": bad,
        },
    )


if __name__ == "__main__":
    main()
