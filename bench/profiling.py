"""Sampling profiles with py-spy: record a process for a while, then sum samples by category."""

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

# Innermost frame first: the first rule a frame matches names the sample's category.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sqlite (executemany, commit, fsync)", ("sqlite_store.py", "sqlite3")),
    ("json codec (encode/decode)", ("inventory_actors/shard/codec.py", "json/")),
    ("domain (ledger, validation, state)", ("inventory_actors/domain/",)),
    ("shard core (queue, batches, outcomes)", ("shard_core.py", "snapshots.py")),
    ("client routing (driver)", ("inventory_actors/cluster/client.py", "partitioning.py")),
    ("ray serialization (pickle of namedtuples)", ("serialization.py", "pickle")),
    ("asyncio event loop", ("asyncio/",)),
    ("ray runtime (tasks, object refs)", ("ray/",)),
    ("benchmark driver", ("bench/",)),
)

# Steps whose inclusive time (samples with the function anywhere on the stack) is reported:
# (label, function name, file the function is in).
STEPS: tuple[tuple[str, str, str], ...] = (
    ("ShardActor.execute (whole call)", "execute", "inventory_actors/cluster/shard_actor.py"),
    ("wire.decode_submissions", "decode_submissions", "inventory_actors/cluster/wire.py"),
    ("wire.encode_outcomes", "encode_outcomes", "inventory_actors/cluster/wire.py"),
    ("ShardCore._commit_batch", "_commit_batch", "inventory_actors/shard/core.py"),
    ("Ledger.execute (domain)", "execute", "inventory_actors/domain/ledger.py"),
    ("codec.encode_command", "encode_command", "inventory_actors/shard/codec.py"),
    ("codec.encode_events", "encode_events", "inventory_actors/shard/codec.py"),
    ("SqliteShardStore.append", "append", "persistence/sqlite_store.py"),
    ("Snapshotter._take", "_take", "inventory_actors/shard/snapshots.py"),
    ("InventoryClient.submit", "submit", "inventory_actors/cluster/client.py"),
    ("wire.encode_submissions", "encode_submissions", "inventory_actors/cluster/wire.py"),
    ("Pending.wait", "wait", "inventory_actors/cluster/client.py"),
    ("wire.decode_outcomes", "decode_outcomes", "inventory_actors/cluster/wire.py"),
)

# The same for a Serve replica running the HTTP app (bench/http_throughput.py).
REPLICA_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("json (encode/decode)", ("json/",)),
    ("pydantic (validation)", ("pydantic",)),
    ("auth and rate limit (keys, HMAC)", ("serve_app/keys.py", "rate_limit.py", "hmac.py")),
    ("hashing (fingerprints, ids)", ("hashlib", "partitioning.py")),
    ("coalescer", ("serve_app/coalescer.py",)),
    ("wire (encode/decode submissions)", ("inventory_actors/cluster/wire.py",)),
    (
        "actor call (client, Ray core)",
        ("inventory_actors/cluster/client.py", "ray/_private/", "_raylet"),
    ),
    ("ray serve (replica, router, metrics)", ("ray/serve/",)),
    ("fastapi and starlette (routing, deps)", ("fastapi/", "starlette/")),
    ("http server (uvicorn, h11, httptools)", ("uvicorn/", "h11/", "httptools/")),
    ("serve_app (routes, service, render)", ("serve_app/",)),
    ("asyncio event loop", ("asyncio/", "uvloop")),
    ("ray (other)", ("ray/",)),
)

REPLICA_STEPS: tuple[tuple[str, str, str], ...] = (
    ("reserve route (whole handler)", "reserve", "serve_app/routes/reservations.py"),
    ("writer dependency (auth)", "writer", "serve_app/routing.py"),
    ("Service.authenticate", "authenticate", "serve_app/service.py"),
    ("Service.run", "run", "serve_app/service.py"),
    ("Coalescer.submit", "submit", "serve_app/coalescer.py"),
    ("Coalescer._call", "_call", "serve_app/coalescer.py"),
    ("InventoryClient.call_shard", "call_shard", "inventory_actors/cluster/client.py"),
    ("wire.encode_submissions", "encode_submissions", "inventory_actors/cluster/wire.py"),
    ("wire.decode_outcomes", "decode_outcomes", "inventory_actors/cluster/wire.py"),
    ("commands.answer (render)", "answer", "serve_app/routes/commands.py"),
    ("fastapi solve_dependencies", "solve_dependencies", "fastapi/dependencies/utils.py"),
    ("fastapi request_response", "app", "fastapi/routing.py"),
    ("BodyLimit middleware", "__call__", "serve_app/middleware/body_limits.py"),
)


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def start_recording(pid: int, seconds: int) -> tuple[subprocess.Popen[bytes], Path] | None:
    """Start `py-spy record` on `pid` in raw (collapsed stack) format; None without py-spy."""
    binary = py_spy()
    if binary is None:
        return None
    handle, name = tempfile.mkstemp(prefix=f"profile-{pid}-", suffix=".txt")
    os.close(handle)
    Path(name).unlink()  # py-spy creates it when done: its absence means py-spy failed
    command = [binary, "record", "-d", str(seconds), "-f", "raw", "-o", name, "--pid", str(pid)]
    command.append("--nonblocking")  # do not pause the process to sample it
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return process, Path(name)


def finish_recording(recording: tuple[subprocess.Popen[bytes], Path]) -> Counter[str] | str:
    """Wait for py-spy; the samples per collapsed stack, or py-spy's complaint."""
    process, path = recording
    _, stderr = process.communicate(timeout=120)
    if not path.exists():
        return stderr.decode(errors="replace").strip()[-400:] or "py-spy wrote no profile"
    stacks: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    path.unlink()
    return stacks


def categorize(
    stacks: Counter[str], rules: tuple[tuple[str, tuple[str, ...]], ...] = CATEGORIES
) -> list[tuple[str, int, float]]:
    """(category, samples, share) by the innermost frame that matches a rule."""
    totals: Counter[str] = Counter()
    for stack, count in stacks.items():
        totals[_category(stack.split(";"), rules)] += count
    return _shares(totals)


def inclusive(
    stacks: Counter[str], steps: tuple[tuple[str, str, str], ...] = STEPS
) -> list[tuple[str, int, float]]:
    """(step, samples, share) for each of `steps` found on any sampled stack."""
    grand = sum(stacks.values()) or 1
    rows = []
    for label, function, file in steps:
        count = sum(
            n
            for stack, n in stacks.items()
            if any(_names(f, function) and file in f for f in stack.split(";"))
        )
        if count:
            rows.append((label, count, 100.0 * count / grand))
    return rows


def top_functions(stacks: Counter[str], limit: int = 12) -> list[tuple[str, int, float]]:
    """(innermost frame, samples, share): where the samples were taken, self time."""
    totals: Counter[str] = Counter()
    for stack, count in stacks.items():
        totals[_short(stack.split(";")[-1])] += count
    return _shares(totals)[:limit]


def _names(frame: str, function: str) -> bool:
    """py-spy writes `function (file:line)`, or `Class.function (file:line)` for methods."""
    name = frame.partition(" (")[0]
    return name == function or name.endswith(f".{function}")


def _category(frames: list[str], rules: tuple[tuple[str, tuple[str, ...]], ...]) -> str:
    for frame in reversed(frames):
        for name, needles in rules:
            if any(needle in frame for needle in needles):
                return name
    return "other"


def _shares(totals: Counter[str]) -> list[tuple[str, int, float]]:
    grand = sum(totals.values()) or 1
    return [(name, count, 100.0 * count / grand) for name, count in totals.most_common()]


def _short(frame: str) -> str:
    """`func (/long/path/pkg/mod.py:12)` -> `func (pkg/mod.py:12)`."""
    name, _, where = frame.partition(" (")
    parts = where.rstrip(")").split("/")
    return f"{name} ({'/'.join(parts[-2:])})" if where else name
