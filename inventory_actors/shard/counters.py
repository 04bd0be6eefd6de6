"""What a shard counts, for its metrics (`cluster/shard_metrics.py`): its own module so the
parts of the engine that count (the settler) need not import the engine."""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class ShardCounters:
    batches: int = 0
    commands: int = 0
    records: int = 0
    storage_failures: int = 0
    overloaded: int = 0
    # Commands refused because another shard owns their SKU or reservation (see ownership.py).
    misrouted: int = 0
    recovery_seconds: float = 0.0
    settled: int = 0
    settle_failures: int = 0
    # Decisions another shard refused (the protocol says it cannot happen): see settlement.py.
    settle_refusals: int = 0
    expired_holds: int = 0


# Called after each durable batch with its size and the seconds its log write took.
BatchObserver = Callable[[int, float], None]
# Commands answered, by (command type, outcome): "ok", "replayed" or the error's slug.
Tally = Counter[tuple[type, str]]
