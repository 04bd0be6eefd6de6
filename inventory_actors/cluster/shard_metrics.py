"""A shard's exporter: the engine counts in plain Python, this turns the counts into Ray
metrics once a second, so a command costs a dict increment, not a metric call."""

import asyncio
from collections import Counter

from inventory_actors.observability import metric_names as names
from inventory_actors.observability.metric_names import MetricSpec
from inventory_actors.observability.ray_metrics import command_label, make_metric
from inventory_actors.shard.core import ShardCore

# How often a shard's counts and gauges reach Ray (which forwards them on its own interval).
EXPORT_INTERVAL_SECONDS = 1.0


class ShardMetrics:
    """One shard's metrics. `observe_batch` runs after each durable batch; `export` copies
    the engine's counts and state into Ray's metrics, from `run`'s loop."""

    def __init__(self, shard_id: int) -> None:
        self._tags = {"shard": str(shard_id)}
        self._metrics = {spec.name: make_metric(spec) for spec in names.SHARD_METRICS}
        for metric in self._metrics.values():
            metric.set_default_tags(self._tags)
        self._batch_commands = self._metrics[names.SHARD_BATCH_COMMANDS.name]
        self._commit_seconds = self._metrics[names.SHARD_COMMIT_SECONDS.name]
        # The engine's cumulative counters as last exported: Ray counters take increments.
        self._exported: Counter[str] = Counter()
        self._labels: dict[type, str] = {}

    def observe_batch(self, size: int, commit_seconds: float) -> None:
        self._batch_commands.observe(size)
        self._commit_seconds.observe(commit_seconds)

    def export(self, core: ShardCore) -> None:
        tally, core.tally = core.tally, Counter()
        commands = self._metrics[names.SHARD_COMMANDS.name]
        for (command_type, outcome), count in tally.items():
            label = self._labels.get(command_type)
            if label is None:
                label = self._labels[command_type] = command_label(command_type)
            commands.inc(count, tags={"command": label, "outcome": outcome})
        counters = core.counters
        self._add(names.SHARD_EXPIRED_HOLDS, counters.expired_holds)
        self._add(names.SHARD_OVERLOADED, counters.overloaded)
        self._add(names.SHARD_STORAGE_FAILURES, counters.storage_failures)
        self._add(names.SHARD_SETTLE_REFUSED, counters.settle_refusals)
        self._add(names.SHARD_MISROUTED, counters.misrouted)
        self._set(names.SHARD_QUEUE_DEPTH, core.queue_depth)
        self._set(names.SHARD_LAST_LSN, core.last_lsn)
        self._set(names.SHARD_RECOVERY_SECONDS, counters.recovery_seconds)
        if core.available:
            self._set(names.SHARD_ACTIVE_HOLDS, core.ledger.active_hold_count)
            self._set(names.SHARD_LOW_STOCK, len(core.ledger.low))

    async def run(self, core: ShardCore) -> None:
        core.on_batch = self.observe_batch
        while True:
            self.export(core)
            await asyncio.sleep(EXPORT_INTERVAL_SECONDS)

    def _add(self, spec: MetricSpec, total: int) -> None:
        increment = total - self._exported[spec.name]
        if increment > 0:
            self._metrics[spec.name].inc(increment)
            self._exported[spec.name] = total

    def _set(self, spec: MetricSpec, value: float) -> None:
        self._metrics[spec.name].set(value)
