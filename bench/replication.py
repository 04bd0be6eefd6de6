"""The cost of replication, side by side in one run on one private cluster (a head and 3 hosts,
a local etcd): durable commands per second through the shard actors in batches, the latency of
one command, and single reservations over HTTP (wrk), with one replica per shard and with
three. Rounds alternate the two, and every figure is printed with the load average.

    python -m bench.replication [--seconds 10] [--rounds 2] [--shards 4]
"""

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import print_json, print_table
from bench.stack import stock
from bench.wrk import run_wrk, write_scripts
from harness.ports import free_port
from harness.replicated import ReplicatedCluster
from harness.serve import private_serve_files, wait_ready
from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import AdjustStock
from inventory_actors.shard.protocol import Submission
from inventory_cli.main import FAST_INGRESS_ENV

BATCH_COMMANDS = 1_000
CALLS_IN_FLIGHT_PER_SHARD = 4
LATENCY_SAMPLES = 300
HTTP_SKUS = 10_000
WRK_THREADS = 2
WRK_CONNECTIONS = 64


def load_average() -> float:
    return os.getloadavg()[0]


def skus_by_shard(client: InventoryClient, per_shard: int) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {s: [] for s in range(client.partition.shard_count)}
    index = 0
    while any(len(skus) < per_shard for skus in found.values()):
        sku = f"bench-{index}"
        owner = client.partition.owner(sku=sku)
        if len(found[owner]) < per_shard:
            found[owner].append(sku)
        index += 1
    return found


async def batches_per_second(client: InventoryClient, seconds: float) -> float:
    """Durable commands per second: each shard kept busy with batches of adjustments."""
    skus = skus_by_shard(client, 100)
    done = 0
    deadline = time.monotonic() + seconds

    async def caller(shard_id: int) -> None:
        nonlocal done
        names = skus[shard_id]
        while time.monotonic() < deadline:
            batch = [
                Submission(AdjustStock(names[i % len(names)], "L01", 1, "received"))
                for i in range(BATCH_COMMANDS)
            ]
            outcomes = await client.call_shard(shard_id, batch)
            done += sum(1 for o in outcomes if o.ok)

    started = time.monotonic()
    await asyncio.gather(
        *(caller(shard_id) for shard_id in skus for _ in range(CALLS_IN_FLIGHT_PER_SHARD))
    )
    return done / (time.monotonic() - started)


async def one_command_ms(client: InventoryClient) -> tuple[float, float]:
    """p50 and p99 of one adjustment at a time, in milliseconds."""
    skus = skus_by_shard(client, 1)
    samples = []
    for index in range(LATENCY_SAMPLES):
        shard_id = index % len(skus)
        command = AdjustStock(skus[shard_id][0], "L01", 1, "received")
        started = time.perf_counter()
        outcome = (await client.call_shard(shard_id, [Submission(command)]))[0]
        samples.append((time.perf_counter() - started) * 1000)
        assert outcome.ok, outcome
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


class Http:
    """The HTTP app over one data directory at a time, on one Serve instance."""

    def __init__(self, namespace: str, tmp: Path) -> None:
        from ray import serve  # noqa: PLC0415

        self.namespace, self.tmp = namespace, tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        serve.start(http_options={"host": "127.0.0.1", "port": self.port})
        self.keys: dict[Path, str] = {}

    def key_of(self, data_dir: Path) -> str:
        from serve_app.keys import KeyStore  # noqa: PLC0415

        if data_dir not in self.keys:
            first = KeyStore.open(data_dir).initialize()
            assert first is not None
            self.keys[data_dir] = first[1]
        return self.keys[data_dir]

    def reservations(self, data_dir: Path, shards: int, seconds: float) -> dict[str, Any]:
        """Single reservations spread over many SKUs, with wrk, against `data_dir`'s shards."""
        from serve_app.deployment import deploy  # noqa: PLC0415
        from serve_app.middleware.rate_limit import RateLimits  # noqa: PLC0415
        from serve_app.service import Settings  # noqa: PLC0415

        key = self.key_of(data_dir)
        settings = Settings(
            data_dir=str(data_dir),
            shards=shards,
            namespace=self.namespace,
            rate_limits=RateLimits.disabled(),
        )
        deploy(settings, num_replicas=1)
        wait_ready(self.url)
        stock(self.url, key, HTTP_SKUS)
        scripts = write_scripts(self.tmp, key, HTTP_SKUS, 100)
        return run_wrk(
            self.url,
            scripts["spread"],
            threads=WRK_THREADS,
            connections=WRK_CONNECTIONS,
            seconds=seconds,
            watched={},
        )


def measure(
    name: str, client: InventoryClient, data_dir: Path, http: Http, args: argparse.Namespace
) -> dict[str, float]:
    figures: dict[str, float] = {"load_before": load_average()}
    figures["commands_per_second"] = asyncio.run(batches_per_second(client, args.seconds))
    figures["one_command_p50_ms"], figures["one_command_p99_ms"] = asyncio.run(
        one_command_ms(client)
    )
    wrk = http.reservations(data_dir, args.shards, args.seconds)
    created = int(wrk["statuses"].get("201", 0))
    assert created > 0.99 * wrk["requests"], wrk["statuses"]
    figures["reservations_per_second"] = created / (wrk["duration_us"] / 1e6)
    figures["reservation_p50_ms"] = wrk["latency_us"]["p50"] / 1000
    figures["reservation_p99_ms"] = wrk["latency_us"]["p99"] / 1000
    figures["load_after"] = load_average()
    print(f"{name}: " + ", ".join(f"{k} {v:,.2f}" for k, v in figures.items()), flush=True)
    return figures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--shards", type=int, default=4)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # Serve's fast ingress, as `make run` has it; read when Ray starts.
    for name, value in FAST_INGRESS_ENV.items():
        os.environ.setdefault(name, value)
    haproxy = private_serve_files()
    replicated = ReplicatedCluster.start(shards=args.shards, hosts=3, replicas=3)
    tmp = Path(tempfile.mkdtemp(prefix="bench-replication-"))
    try:
        plain_dir = replicated.work / "plain"
        plain = InventoryClient.connect(
            plain_dir, shard_count=args.shards, namespace=replicated.namespace
        )
        http = Http(replicated.namespace, tmp)
        runs: dict[str, list[dict[str, float]]] = {"factor 1": [], "factor 3": []}
        for _ in range(args.rounds):
            runs["factor 1"].append(measure("factor 1", plain, plain_dir, http, args))
            runs["factor 3"].append(
                measure("factor 3", replicated.client, replicated.data_dir, http, args)
            )
        report(runs)
    finally:
        replicated.shutdown()
        for path in (tmp, haproxy):
            import shutil  # noqa: PLC0415

            shutil.rmtree(path, ignore_errors=True)


def report(runs: dict[str, list[dict[str, float]]]) -> None:
    def median(mode: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[mode])

    keys = [
        "commands_per_second",
        "one_command_p50_ms",
        "one_command_p99_ms",
        "reservations_per_second",
        "reservation_p50_ms",
        "reservation_p99_ms",
    ]
    rows = [
        [
            key,
            f"{median('factor 1', key):,.2f}",
            f"{median('factor 3', key):,.2f}",
            f"{median('factor 3', key) / median('factor 1', key):.2f}",
        ]
        for key in keys
    ]
    print_table(["median of rounds", "factor 1", "factor 3", "ratio"], rows)
    loads = [
        run[k] for mode in runs.values() for run in mode for k in ("load_before", "load_after")
    ]
    print(f"load average during the run: {min(loads):.2f} to {max(loads):.2f}")
    print_json(
        "replication", {key: [median("factor 1", key), median("factor 3", key)] for key in keys}
    )


if __name__ == "__main__":
    main()
