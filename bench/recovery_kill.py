"""Recovery of a real shard actor after SIGKILL: seconds until the restarted actor (a new
process, its state recovered from a snapshot and a tail) answers as available, at the same LSN.

    python -m bench.recovery_kill [--levels 1000000] [--tail 100000] [--kills 2]
"""

import argparse
import asyncio
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import print_json, source_state, start_ray
from bench.recovery import build

GOAL_SECONDS = 2.0
POLL_SECONDS = 0.01
RECOVERY_TIMEOUT_SECONDS = 300.0


def _status(shard: Any) -> Any:
    import ray  # noqa: PLC0415

    return ray.get(shard.status.remote(), timeout=RECOVERY_TIMEOUT_SECONDS)


def kill_and_time(shard: Any) -> dict[str, float]:
    """SIGKILL the shard's process; seconds until a new process answers, recovered."""
    before = _status(shard)
    started = time.perf_counter()
    os.kill(before.pid, signal.SIGKILL)
    deadline = started + RECOVERY_TIMEOUT_SECONDS
    while time.perf_counter() < deadline:
        try:
            status = _status(shard)
        except Exception:  # the actor is restarting: the call fails or waits
            time.sleep(POLL_SECONDS)
            continue
        if status.pid != before.pid and status.available:
            if status.last_lsn != before.last_lsn:
                raise RuntimeError(f"recovered to lsn {status.last_lsn}, not {before.last_lsn}")
            return {
                "seconds": time.perf_counter() - started,
                "replay_seconds": status.recovery_seconds,
            }
        time.sleep(POLL_SECONDS)
    raise RuntimeError("the shard did not come back")


def measure(levels: int, tail: int, kills: int) -> dict[str, Any]:
    from inventory_actors.cluster.shard_actor import ShardActor  # noqa: PLC0415
    from inventory_actors.shard.config import ShardConfig  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="bench-kill-") as tmp:
        path = Path(tmp) / "shard-0.sqlite"
        built = asyncio.run(build(path, levels, 1, holds=min(10_000, levels), tail=tail))
        namespace = f"bench-kill-{os.getpid()}"
        start_ray(namespace)
        shard = ShardActor.options(  # type: ignore[attr-defined]
            name="inventory-shard-0", namespace=namespace
        ).remote(0, str(path), ShardConfig(), namespace)
        first = _status(shard)
        runs = [kill_and_time(shard) for _ in range(kills)]
    best = min(runs, key=lambda run: run["seconds"])
    return {
        "levels": built["levels"],
        "tail_records": built["tail_records"],
        "first_open_seconds": first.recovery_seconds,
        "kills": runs,
        "seconds": best["seconds"],
        "replay_seconds": best["replay_seconds"],
        "goal_seconds": GOAL_SECONDS,
        "goal_met": best["seconds"] <= GOAL_SECONDS,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=1_000_000)
    parser.add_argument("--tail", type=int, default=100_000)
    parser.add_argument("--kills", type=int, default=2)
    args = parser.parse_args()
    figures = measure(args.levels, args.tail, args.kills)
    print(
        f"{figures['levels']:,} SKU-locations, {figures['tail_records']:,}-record tail: back "
        f"{figures['seconds']:.2f} s after SIGKILL (replay {figures['replay_seconds']:.2f} s)"
    )
    print_json("recovery_kill", figures | {"source": source_state()})


if __name__ == "__main__":
    main()
