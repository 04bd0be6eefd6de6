"""`ray.util.metrics` objects made from the catalogue in `metric_names`, and the command
label every exporter shares."""

import re
from typing import Any

from ray.util import metrics

from inventory_actors.observability.metric_names import MetricSpec

_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def make_metric(spec: MetricSpec) -> Any:
    """The Ray metric object for a catalogue entry."""
    if spec.kind == "counter":
        return metrics.Counter(spec.name, description=spec.description, tag_keys=spec.tags)
    if spec.kind == "gauge":
        return metrics.Gauge(spec.name, description=spec.description, tag_keys=spec.tags)
    return metrics.Histogram(
        spec.name,
        description=spec.description,
        boundaries=list(spec.boundaries),
        tag_keys=spec.tags,
    )


def command_label(command_type: type) -> str:
    """`ReserveHold` -> `reserve_hold`: the command label of `inventory_shard_commands`."""
    return _CAMEL.sub("_", command_type.__name__).lower()
