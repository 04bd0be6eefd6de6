"""The wire format between clients and shard actors: one JSON string per call.

Ray pickles a list of small namedtuples object by object, which costs more than running the
commands; a single string travels for almost nothing. The encoding is the log's own (see
`persistence.codec`), plus the service errors.
"""

import json
from collections.abc import Callable, Sequence
from typing import Any

from inventory_actors.domain import DomainError, Result
from inventory_actors.errors import (
    IdempotencyKeyReused,
    Overloaded,
    ServiceError,
    ShardUnavailable,
    StorageFailure,
)
from inventory_actors.protocol import Outcome, Submission
from persistence.codec import (
    RESULT_TAGS,
    command_from_row,
    command_row,
    dumps,
    result_from_row,
    result_row,
)

_SERVICE_TAGS: dict[type, str] = {
    Overloaded: "overloaded",
    ShardUnavailable: "shard-unavailable",
    StorageFailure: "storage-failure",
    IdempotencyKeyReused: "idempotency-key-reused",
}
_SERVICE_DECODERS: dict[str, Callable[..., ServiceError]] = {
    tag: kind for kind, tag in _SERVICE_TAGS.items()
}
assert not set(_SERVICE_TAGS.values()) & set(RESULT_TAGS.values())


def encode_submissions(submissions: Sequence[Submission]) -> str:
    return dumps([(command_row(s.command), s.idempotency_key, s.fingerprint) for s in submissions])


def decode_submissions(payload: str) -> list[Submission]:
    return [Submission(command_from_row(row), key, fp) for row, key, fp in json.loads(payload)]


def _value_row(value: Result | DomainError | ServiceError) -> tuple[Any, ...]:
    if isinstance(value, ServiceError):
        return (_SERVICE_TAGS[type(value)], *value.args)
    return result_row(value)


def _value_from_row(row: list[Any]) -> Result | DomainError | ServiceError:
    service = _SERVICE_DECODERS.get(row[0])
    return service(*row[1:]) if service is not None else result_from_row(row)


def encode_outcomes(outcomes: Sequence[Outcome]) -> str:
    return dumps([(_value_row(o.value), o.replayed, o.lsn) for o in outcomes])


def decode_outcomes(payload: str) -> list[Outcome]:
    return [
        Outcome(_value_from_row(row), replayed, lsn) for row, replayed, lsn in json.loads(payload)
    ]
