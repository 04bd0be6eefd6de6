"""The `inventory` command: start and stop a local cluster with the shards and the HTTP app,
show shard status, take snapshots, manage API keys."""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inventory_cli.exports import add_export_parsers
from inventory_cli.keys import add_keys_parser
from inventory_cli.restock import add_restock_parser

if TYPE_CHECKING:
    from inventory_actors.cluster.client import InventoryClient

DEFAULT_DATA_DIR = "./data"
DASHBOARD_PORT = 8265
HTTP_PORT = 8000
# Ray's Prometheus endpoint on this node (`/metrics`): the service's metrics and Ray's own.
METRICS_PORT = 8080
# `inventory up` in the foreground exits this long after the cluster went away.
CLUSTER_CHECK_SECONDS = 5.0
# The fast Serve ingress: several times the default proxy's throughput on small nodes. Serve
# kills a node's proxy that is not ready within 5 s and then fails to start; on a busy small
# node starting HAProxy can take longer.
FAST_INGRESS_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "60",
}


def _ray_binary() -> str:
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else (shutil.which("ray") or "ray")


def _cluster_running() -> bool:
    result = subprocess.run(
        [_ray_binary(), "status"], capture_output=True, text=True, timeout=60, check=False
    )
    return result.returncode == 0


def _start_head(num_cpus: int | None) -> None:
    command = [
        _ray_binary(),
        "start",
        "--head",
        "--dashboard-host",
        "127.0.0.1",
        "--dashboard-port",
        str(DASHBOARD_PORT),
        "--include-dashboard",
        "true",
        "--disable-usage-stats",
        "--metrics-export-port",
        str(METRICS_PORT),
    ]
    if num_cpus is not None:
        command += ["--num-cpus", str(num_cpus)]
    env = {**os.environ, **FAST_INGRESS_ENV}
    subprocess.run(command, check=True, env=env, timeout=180)


def _connect(data_dir: str, shards: int | None) -> "InventoryClient":
    import ray

    from inventory_actors.cluster.client import InventoryClient

    if not ray.is_initialized():
        ray.init(address="auto", namespace="inventory", log_to_driver=False)
    return InventoryClient.connect(data_dir, shard_count=shards)


def _start_jobs_book(data_dir: Path) -> None:
    """The restock jobs' actor, so that the first job need not start it."""
    import ray

    from inventory_actors.restock.runtime import jobs_actor

    ray.get(jobs_actor(data_dir, "inventory").recent.remote(1), timeout=120)


def _print_status(client: "InventoryClient") -> None:
    from inventory_actors.shard.errors import ShardUnavailable

    # `unsettled`: reservations this shard decided as their home that some other shard has
    # not applied yet (non-zero for long means a shard is unreachable).
    header = f"{'shard':>5} {'state':<11} {'lsn':>10} {'queue':>6} {'levels':>9} {'holds':>7}"
    print(f"{header} {'unsettled':>9}  file")
    for status in client.status():
        if isinstance(status, ShardUnavailable):
            print(f"{status.shard_id:>5} {'unavailable':<11} {status.detail}")
            continue
        state = "up" if status.available else "recovering"
        print(
            f"{status.shard_id:>5} {state:<11} {status.last_lsn:>10} {status.queue_depth:>6} "
            f"{status.level_count:>9} {status.active_holds:>7} "
            f"{status.unsettled_reservations:>9}  {status.path}"
        )


def _first_admin_key(data_dir: Path) -> str | None:
    """INVENTORY_ADMIN_KEY becomes the first admin key of a new data directory; without it a
    new key is made. Either way only on first use; the new key is returned to print once."""
    from serve_app.keys import bootstrap_admin, create_first_admin

    data_dir.mkdir(parents=True, exist_ok=True)
    if bootstrap_admin(data_dir, os.environ.get("INVENTORY_ADMIN_KEY")) is not None:
        return None
    return create_first_admin(data_dir)


def _serve(data_dir: Path, shards: int | None, host: str, port: int) -> None:
    from ray import serve

    from serve_app.deployment import deploy
    from serve_app.service import Settings

    serve.start(http_options={"host": host, "port": port})
    deploy(Settings(data_dir=str(data_dir), shards=shards))


def cmd_up(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    admin_key = _first_admin_key(data_dir)
    started_here = not _cluster_running()
    if started_here:
        _start_head(args.num_cpus)
    client = _connect(str(data_dir), args.shards)
    _start_jobs_book(data_dir)
    _serve(data_dir, args.shards, args.host, args.port)
    url = f"http://{args.host}:{args.port}"
    print(f"Inventory API: {url}  (docs: {url}/docs)")
    print(
        f"Ray dashboard: http://127.0.0.1:{DASHBOARD_PORT}"
        "  (if it asks for a token: `ray get-auth-token` prints it)"
    )
    print(f"Console: {url}/console  Metrics (Prometheus): http://127.0.0.1:{METRICS_PORT}/metrics")
    print(f"Data directory: {data_dir}")
    if admin_key is not None:
        print(f"Admin API key (shown once, keep it): {admin_key}")
    _print_status(client)
    if args.detach:
        print("Running in the background; `inventory down` stops it.")
        return 0
    print("Running; press Ctrl-C to stop.")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    gcs_address = _gcs_address()
    while not stop.wait(CLUSTER_CHECK_SECONDS):
        if not _reachable(gcs_address):
            print("The cluster has stopped (`inventory down`?); exiting.")
            return 0
    print("Stopping.")
    return _stop(stop_cluster=started_here)


def _gcs_address() -> str:
    import ray

    address: str = ray.get_runtime_context().gcs_address
    return address


def _reachable(address: str, timeout_seconds: float = 2.0) -> bool:
    """Whether something accepts connections at `host:port` (the cluster's GCS)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_seconds):
            return True
    except OSError:
        return False


def _stop(stop_cluster: bool) -> int:
    """Stop the HTTP app first (no request is cut mid-way), then the cluster with the shards.
    Shards need no shutdown step: everything they acknowledged is already on disk."""
    import ray
    from ray import serve

    if ray.is_initialized() or _cluster_running():
        if not ray.is_initialized():
            ray.init(address="auto", namespace="inventory", log_to_driver=False)
        serve.shutdown()  # type: ignore[no-untyped-call]
    if not stop_cluster:
        return 0
    return subprocess.run([_ray_binary(), "stop"], check=False, timeout=180).returncode


def cmd_down(args: argparse.Namespace) -> int:
    return _stop(stop_cluster=True)


def cmd_status(args: argparse.Namespace) -> int:
    from inventory_actors.cluster.replica_sets import PrimaryHandles
    from inventory_actors.cluster.replica_status import replica_status

    client = _connect(args.data_dir, None)
    replicated = isinstance(client.shards, PrimaryHandles)
    if args.json:
        if isinstance(client.shards, PrimaryHandles):
            shards: list[Any] = replica_status(client.shards)
        else:
            shards = [_status_fields(status) for status in client.status()]
        print(json.dumps({"replicated": replicated, "shards": shards}, indent=2))
        return 0
    _print_status(client)
    if isinstance(client.shards, PrimaryHandles):
        _print_replicas(replica_status(client.shards))
    _print_webhooks()
    return 0


def _status_fields(status: Any) -> dict[str, Any]:
    from inventory_actors.shard.errors import ShardUnavailable

    if isinstance(status, ShardUnavailable):
        return {"shard": status.shard_id, "state": "unavailable", "detail": status.detail}
    fields: dict[str, Any] = status._asdict()
    return fields


def _print_replicas(shards: list[dict[str, Any]]) -> None:
    print(
        f"{'shard':>5} {'epoch':>6} {'replica':<24} {'host':<8} {'role':<11} {'lsn':>10} "
        f"{'lag':>6} {'votes':<5} {'pid':>7}  file"
    )
    for shard in shards:
        for replica in shard["replicas"]:
            print(
                f"{shard['shard']:>5} {shard.get('epoch', ''):>6} {replica['name']:<24} "
                f"{replica['host']:<8} {replica['role']:<11} {replica.get('lsn', ''):>10} "
                f"{replica.get('lag', ''):>6} {str(replica['votes']).lower():<5} "
                f"{replica.get('pid', ''):>7}  {replica.get('file', '')}"
            )


def cmd_failover(args: argparse.Namespace) -> int:
    """A planned switchover of one replicated shard to another replica."""
    import ray

    from inventory_actors.cluster.replica_sets import PrimaryHandles

    client = _connect(args.data_dir, None)
    if not isinstance(client.shards, PrimaryHandles):
        print("this data directory's shards are not replicated", file=sys.stderr)
        return 2
    if not 0 <= args.shard < len(client.shards):
        print(f"no shard {args.shard}: there are {len(client.shards)}", file=sys.stderr)
        return 2
    primary = client.shards[args.shard]
    new_primary = ray.get(primary.hand_over.remote(args.to), timeout=60)
    print(f"shard {args.shard}: the primary is now {new_primary}")
    return 0


def _print_webhooks() -> None:
    """Each webhook subscription's deliveries and dead letters, if the dispatcher runs."""
    import ray

    from inventory_actors.feed.webhook_dispatcher import DISPATCHER_NAME
    from persistence.webhooks_store import Subscription

    try:
        hooks: Any = ray.get_actor(DISPATCHER_NAME, namespace="inventory")
    except ValueError:
        return
    subscriptions: list[Subscription] = ray.get(hooks.subscriptions.remote(), timeout=30)
    for subscription in subscriptions:
        print(
            f"webhook {subscription.subscription_id} {subscription.url}: "
            f"{subscription.delivered:,} delivered, {subscription.dead_letters:,} dead letters"
        )


def cmd_snapshot(args: argparse.Namespace) -> int:
    import ray

    client = _connect(args.data_dir, None)
    done = ray.get([shard.snapshot.remote() for shard in client.shards], timeout=600)
    print(f"snapshots taken: {sum(done)} of {len(done)}")
    return 0 if all(done) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inventory", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a local Ray cluster, the shards and the HTTP app")
    up.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    up.add_argument("--shards", type=int, default=None, help="shard count (new data dirs only)")
    up.add_argument("--host", default="127.0.0.1", help="HTTP address to listen on")
    up.add_argument("--port", type=int, default=HTTP_PORT, help="HTTP port")
    up.add_argument("--num-cpus", type=int, default=None)
    up.add_argument("--detach", action="store_true", help="leave it running and return")
    up.set_defaults(handler=cmd_up)
    down = commands.add_parser("down", help="stop the HTTP app and the local Ray cluster")
    down.set_defaults(handler=cmd_down)
    for name, handler, text in (
        ("status", cmd_status, "show each shard's state (and each replica's)"),
        ("snapshot", cmd_snapshot, "take a snapshot of every shard now"),
        ("failover", cmd_failover, "hand a replicated shard to another replica, planned"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
        sub.set_defaults(handler=handler)
        if name == "status":
            sub.add_argument("--json", action="store_true", help="print JSON")
        if name == "failover":
            sub.add_argument("--shard", type=int, required=True)
            sub.add_argument(
                "--to",
                default=None,
                help="the replica to hand it to (default: the follower with the longest log)",
            )
    add_keys_parser(commands)
    add_restock_parser(commands, DEFAULT_DATA_DIR)
    add_export_parsers(commands, DEFAULT_DATA_DIR)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
