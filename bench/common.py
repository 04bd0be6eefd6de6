"""Small helpers shared by the benchmarks: tables, the final JSON line and the workload."""

import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from inventory_actors.domain import AdjustStock, LineRequest, ReserveStock
from inventory_actors.shard.partitioning import new_hold_id, slot_of

RESERVE_TTL_MS = 600_000
REPO = Path(__file__).resolve().parent.parent


def now_ms() -> int:
    """The shard's clock: wall-clock milliseconds."""
    return time.time_ns() // 1_000_000


def start_ray(namespace: str) -> None:
    """A private local Ray instance for this process (never someone else's cluster)."""
    import ray  # noqa: PLC0415 - only the benchmarks that use Ray pay for importing it

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        namespace=namespace,
    )


def sku_name(index: int) -> str:
    return f"sku-{index:07d}"


def location_name(index: int) -> str:
    return f"L{index:02d}"


def adjustment(sku: str, location: str, delta: int) -> AdjustStock:
    return AdjustStock(sku, location, delta, "received")


def reservation(sku: str, quantity: int = 1, location: str | None = None) -> ReserveStock:
    """A one-line hold whose id routes to the shard that owns `sku`."""
    hold_id = new_hold_id(slot_of(sku))
    return ReserveStock(hold_id, (LineRequest(sku, quantity, location),), RESERVE_TTL_MS)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def print_json(name: str, figures: dict[str, object]) -> None:
    print(json.dumps({"benchmark": name, **figures}, sort_keys=True))


def source_state() -> str:
    """The commit measured, and which tracked files differ from it (work in progress)."""

    def git(*args: str) -> str:
        try:
            command = ["git", "-C", str(REPO), *args]
            done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=10)
        except OSError:
            return ""
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("diff", "--name-only", "HEAD").split()
    return f"{head} + uncommitted changes to {', '.join(dirty)}" if dirty else head
