"""Structured logs: one JSON object per line, with the request id of the request being served
when there is one. Every process of the service (API replicas, shards, the restock and webhook
actors) logs this way, so Ray's log files can be searched and shipped as they are."""

import json
import logging
import sys
import time
from typing import Any

from inventory_actors.observability.request_context import request_id

# Attributes every LogRecord has; anything else a call passes with `extra=` is logged too.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _rfc3339(record.created),
            "level": record.levelname,
            "component": self._component,
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = request_id.get()
        if current is not None:
            entry["request_id"] = current
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


def _rfc3339(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure(component: str, level: int = logging.INFO) -> None:
    """Send this process's logs (the root logger's) to stderr as JSON lines. The process's
    own stderr, which Ray keeps in the worker's `.err` file: a Serve replica replaces
    `sys.stderr` with a buffer into its own log file, where lines arrive late, unstructured."""
    handler = logging.StreamHandler(sys.__stderr__)
    handler.setFormatter(JsonFormatter(component))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
