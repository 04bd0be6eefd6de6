"""The wire format between clients and shard actors: one JSON text per call, not objects for Ray
to pickle one by one. The encoding is the log's own (`inventory_actors.shard.codec`) plus the
service errors; submissions travel as lines, and the shard stores a command's line in its log as
it came (docs/engine.md, The wire format)."""

import json
from collections.abc import Callable, Sequence
from typing import Any

from inventory_actors.domain import DomainError, Result
from inventory_actors.shard.codec import (
    RESULT_TAGS,
    command_from_row,
    command_row,
    dumps,
    result_from_row,
    result_row,
)
from inventory_actors.shard.errors import (
    IdempotencyKeyReused,
    NotOwner,
    NotPrimary,
    Overloaded,
    ServiceError,
    ShardUnavailable,
    StorageFailure,
)
from inventory_actors.shard.protocol import Outcome, Submission

_SERVICE_TAGS: dict[type, str] = {
    Overloaded: "overloaded",
    ShardUnavailable: "shard-unavailable",
    StorageFailure: "storage-failure",
    IdempotencyKeyReused: "idempotency-key-reused",
    NotOwner: "shard-misrouted",
    NotPrimary: "shard-not-primary",
}
_SERVICE_DECODERS: dict[str, Callable[..., ServiceError]] = {
    tag: kind for kind, tag in _SERVICE_TAGS.items()
}
assert not set(_SERVICE_TAGS.values()) & set(RESULT_TAGS.values())
_loads = json.loads
# tuple.__new__ skips the Python-level __new__ of a named tuple, for values built per command.
_new = tuple.__new__


def encode_submissions(submissions: Sequence[Submission]) -> str:
    meta = None
    if any(s.idempotency_key is not None or s.fingerprint is not None for s in submissions):
        meta = [(s.idempotency_key, s.fingerprint) for s in submissions]
    lines = [dumps(meta)]
    lines += [dumps(command_row(s.command)) for s in submissions]
    return "\n".join(lines)


def decode_submissions(payload: str) -> list[Submission]:
    return decode_submission_texts(payload)[0]


def decode_submission_texts(payload: str) -> tuple[list[Submission], list[str]]:
    """The submissions, and each command's JSON text as the client encoded it."""
    header, *texts = payload.split("\n")
    meta = _loads(header)
    # One parse of all commands costs a third of parsing them line by line.
    rows = _loads(f"[{','.join(texts)}]") if texts else []
    if len(rows) != len(texts):
        raise ValueError("a command line is not one JSON value")
    if meta is None:
        return [_new(Submission, (command_from_row(row), None, None)) for row in rows], texts
    if len(meta) != len(rows):
        raise ValueError(f"{len(meta)} keys for {len(rows)} commands")
    submissions = [
        Submission(command_from_row(row), key, fingerprint)
        for row, (key, fingerprint) in zip(rows, meta, strict=True)
    ]
    return submissions, texts


def _value_row(value: Result | DomainError | ServiceError) -> tuple[Any, ...]:
    tag = _SERVICE_TAGS.get(type(value))
    if tag is not None:
        return (tag, *value.args)  # type: ignore[union-attr]
    return result_row(value)  # type: ignore[arg-type]


def _value_from_row(row: list[Any]) -> Result | DomainError | ServiceError:
    service = _SERVICE_DECODERS.get(row[0])
    return service(*row[1:]) if service is not None else result_from_row(row)


def encode_outcomes(outcomes: Sequence[Outcome]) -> str:
    # One pass of the encoder over all rows: half the cost of encoding them one by one.
    return dumps([(_value_row(value), replayed, lsn) for value, replayed, lsn in outcomes])


def decode_outcomes(payload: str) -> list[Outcome]:
    return [
        _new(Outcome, (_value_from_row(row), replayed, lsn))
        for row, replayed, lsn in _loads(payload)
    ]
