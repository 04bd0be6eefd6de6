"""The wire between clients and shard actors: submissions and outcomes come back equal."""

import pytest

from inventory_actors.cluster.wire import (
    decode_outcomes,
    decode_submission_texts,
    decode_submissions,
    encode_outcomes,
    encode_submissions,
)
from inventory_actors.domain import (
    AdjustStock,
    CommitHold,
    DomainError,
    ExpiryResult,
    HoldLine,
    HoldNotActive,
    HoldStatus,
    HoldView,
    InsufficientStock,
    InvalidCommand,
    LineRequest,
    LocationView,
    ReserveStock,
    Shortage,
    SkuView,
)
from inventory_actors.shard.codec import encode_command
from inventory_actors.shard.errors import (
    IdempotencyKeyReused,
    NotOwner,
    Overloaded,
    ServiceError,
    ShardUnavailable,
    StorageFailure,
)
from inventory_actors.shard.protocol import Outcome, Submission

SUBMISSIONS = [
    Submission(AdjustStock("A", "berlin", -2, "damaged", "Grüße", 3)),
    Submission(
        ReserveStock("h1", (LineRequest("A", 1), LineRequest("B", 2, "paris")), 60_000, "cart"),
        "key-1",
    ),
    Submission(CommitHold("h1"), "key-2", "POST /holds/h1/commit"),
]

OUTCOMES = [
    Outcome(SkuView("A", 3, (LocationView("berlin", 5, 2),)), False, 7),
    Outcome(
        HoldView("h1", HoldStatus.ACTIVE, (HoldLine("A", "berlin", 1),), 9, "cart", 1, None),
        True,
        8,
    ),
    Outcome(ExpiryResult(2), False, 9),
    Outcome(InsufficientStock((Shortage("A", None, 3, 1),))),
    Outcome(HoldNotActive("h1", "expired"), True),
    Outcome(InvalidCommand("idempotency key must be 1 to 255 printable ASCII characters")),
    Outcome(Overloaded("shard 0 queue is full", 2.5)),
    Outcome(ShardUnavailable(3, "shard is recovering")),
    Outcome(StorageFailure(1, "write failed: disk I/O error")),
    Outcome(IdempotencyKeyReused("key-1")),
    Outcome(NotOwner(1, "reservation", "r_00a" + "b" * 20, 2)),
]


def test_submissions_come_back_equal_and_typed() -> None:
    decoded = decode_submissions(encode_submissions(SUBMISSIONS))
    assert decoded == SUBMISSIONS
    assert [type(s.command) for s in decoded] == [type(s.command) for s in SUBMISSIONS]
    reserve = decoded[1].command
    assert isinstance(reserve, ReserveStock)
    assert all(isinstance(line, LineRequest) for line in reserve.lines)


def test_no_submissions_travel_as_an_empty_list() -> None:
    assert decode_submissions(encode_submissions([])) == []


@pytest.mark.parametrize("outcome", OUTCOMES, ids=lambda o: type(o.value).__name__)
def test_every_kind_of_outcome_comes_back_with_its_fields(outcome: Outcome) -> None:
    (decoded,) = decode_outcomes(encode_outcomes([outcome]))
    assert type(decoded.value) is type(outcome.value)
    assert (decoded.replayed, decoded.lsn) == (outcome.replayed, outcome.lsn)
    assert decoded.ok == outcome.ok
    if isinstance(outcome.value, DomainError | ServiceError):
        assert isinstance(decoded.value, Exception)
        assert decoded.value.args == outcome.value.args
        assert vars(decoded.value) == vars(outcome.value)
    else:
        assert decoded.value == outcome.value


def test_a_service_error_keeps_its_retry_advice() -> None:
    (decoded,) = decode_outcomes(encode_outcomes([Outcome(Overloaded("full", 2.5))]))
    assert isinstance(decoded.value, Overloaded)
    assert decoded.value.retry_after_seconds == 2.5


def test_a_submission_of_an_unknown_command_does_not_decode() -> None:
    with pytest.raises((KeyError, ValueError)):
        decode_submissions('null\n["explode","A"]')


def test_a_submission_with_a_field_too_many_does_not_decode() -> None:
    with pytest.raises(ValueError, match="fields"):
        decode_submissions('null\n["commit","h1","extra"]')


def test_each_command_travels_as_the_text_the_log_stores() -> None:
    submissions, texts = decode_submission_texts(encode_submissions(SUBMISSIONS))
    assert submissions == SUBMISSIONS
    assert texts == [encode_command(s.command) for s in SUBMISSIONS]


def test_a_newline_inside_a_text_field_stays_inside_its_command() -> None:
    submission = Submission(AdjustStock("A", "b", 1, "received", "line 1\nline 2"))
    assert decode_submissions(encode_submissions([submission])) == [submission]


@pytest.mark.parametrize(
    "payload",
    [
        'null\n["commit","h1"],["commit","h2"]',  # two values on one line
        'null\n["commit",\n"h1"]',  # one value over two lines
        'null\n["commit","h1"]\n',  # an empty line
        '[["k",null]]\n["commit","h1"]\n["commit","h2"]',  # keys for fewer commands
    ],
)
def test_lines_that_are_not_one_command_each_do_not_decode(payload: str) -> None:
    with pytest.raises(ValueError):
        decode_submissions(payload)
