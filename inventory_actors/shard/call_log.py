"""What a shard logs about a call, with the request ids its commands came from: stock changes
(an audit trail of the operators' actions, which are few) and commands the shard could not run
(queue full, recovering, failed write), which an operator wants to trace back to requests.
Reservations that succeed or are refused for want of stock are the normal traffic: counted by
metrics, not logged."""

import logging
from collections import Counter
from collections.abc import Sequence

from inventory_actors.domain import AdjustStock, RestockRows, SetStock, SetThreshold, TransferStock
from inventory_actors.shard.errors import ServiceError
from inventory_actors.shard.protocol import Outcome, Submission

log = logging.getLogger("inventory.shard")

AUDITED = frozenset({AdjustStock, SetStock, TransferStock, SetThreshold, RestockRows})
# Request ids per log line at most: a 1,000-command call must not write a megabyte line.
REQUEST_IDS_PER_LINE_MAX = 20


def log_call(
    shard_id: int,
    submissions: Sequence[Submission],
    outcomes: Sequence[Outcome],
    request_ids: Sequence[str],
) -> None:
    """One line for the call's stock changes, one for its commands refused by the service."""
    changed: Counter[str] = Counter()
    changed_ids: list[str] = []
    failed: Counter[str] = Counter()
    failed_ids: list[str] = []
    for index, (sub, outcome) in enumerate(zip(submissions, outcomes, strict=True)):
        value = outcome.value
        if isinstance(value, ServiceError):
            failed[value.slug] += 1
            _note(failed_ids, request_ids, index)
        elif type(sub.command) in AUDITED:
            changed[type(sub.command).__name__] += 1
            _note(changed_ids, request_ids, index)
    if changed:
        log.info(
            "stock commands",
            extra={"shard": shard_id, "commands": dict(changed), "request_ids": changed_ids},
        )
    if failed:
        log.warning(
            "commands not run",
            extra={"shard": shard_id, "errors": dict(failed), "request_ids": failed_ids},
        )


def _note(found: list[str], request_ids: Sequence[str], index: int) -> None:
    if index < len(request_ids) and len(found) < REQUEST_IDS_PER_LINE_MAX:
        rid = request_ids[index]
        if rid and rid not in found:
            found.append(rid)
