"""Validation at the boundary: what a client may send, refused with a readable reason."""

import pytest

from inventory_actors.cluster.boundary import validate_command
from inventory_actors.domain import (
    AdjustStock,
    Command,
    CommitHold,
    ExpireHolds,
    ExtendHold,
    InvalidCommand,
    LineRequest,
    PruneHolds,
    ReleaseHold,
    ReserveStock,
    SetStock,
    SetThreshold,
    TransferStock,
    limits,
)

LINE = (LineRequest("A", 1),)
TTL = 60_000


@pytest.mark.parametrize(
    "command",
    [
        AdjustStock("A", "berlin", 5, "received"),
        AdjustStock("A", "berlin", -limits.DELTA_MAX, "damaged", "r" * 256, 3),
        AdjustStock("A" * 128, "a.b:c/d-e_F9", limits.DELTA_MAX, "other"),
        SetStock("A", "berlin", 0),
        SetStock("A", "berlin", limits.ON_HAND_MAX, "correction"),
        TransferStock("A", "berlin", "paris", limits.QUANTITY_MAX),
        ReserveStock("h1", LINE, TTL),
        ReserveStock("h" * 64, (LineRequest("A", 1, "berlin"),) * 100, limits.TTL_MS_MAX),
        ReserveStock("h1", LINE, limits.TTL_MS_MIN, "cart-1"),
        CommitHold("h1"),
        ReleaseHold("h1"),
        ExtendHold("h1", limits.TTL_MS_MIN),
        ExtendHold("h1", limits.TTL_MS_MAX),
        SetThreshold("A", "berlin", 0),
        SetThreshold("A", "berlin", limits.ON_HAND_MAX),
        SetThreshold("A", "berlin", None),
    ],
    ids=repr,
)
def test_a_command_within_the_contract_passes(command: Command) -> None:
    validate_command(command)


def _refusal(command: Command) -> str:
    with pytest.raises(InvalidCommand) as caught:
        validate_command(command)
    message = caught.value.detail
    assert message and message == str(caught.value)
    assert "\n" not in message and len(message) < 200
    return message


@pytest.mark.parametrize(
    ("command", "words"),
    [
        (AdjustStock("", "berlin", 1, "received"), "pattern"),
        (AdjustStock("A B", "berlin", 1, "received"), "pattern"),
        (AdjustStock("Grüße", "berlin", 1, "received"), "pattern"),
        (AdjustStock("A" * 129, "berlin", 1, "received"), "pattern"),
        (AdjustStock("A\n", "berlin", 1, "received"), "pattern"),
        (AdjustStock("A", "ber lin", 1, "received"), "location"),
        (AdjustStock("A", "berlin", 1, "stolen"), "reason"),
        (AdjustStock("A", "berlin", 0, "received"), "0"),
        (AdjustStock("A", "berlin", limits.DELTA_MAX + 1, "received"), "delta"),
        (AdjustStock("A", "berlin", True, "received"), "delta"),
        (AdjustStock("A", "berlin", 1, "received", "r" * 257), "reference"),
        (SetStock("A", "berlin", -1), "on_hand"),
        (SetStock("A", "berlin", limits.ON_HAND_MAX + 1), "on_hand"),
        (SetStock("A", "berlin", True), "on_hand"),
        (SetStock("A", "", 1), "pattern"),
        (TransferStock("A", "berlin", "paris", 0), "quantity"),
        (TransferStock("A", "berlin", "paris", -3), "quantity"),
        (TransferStock("A", "berlin", "paris", limits.QUANTITY_MAX + 1), "quantity"),
        (TransferStock("A", "berlin", "paris", False), "quantity"),
        (TransferStock("A", "berl in", "paris", 1), "from_location"),
        (ReserveStock("", LINE, TTL), "1 character"),
        (ReserveStock("h" * 65, LINE, TTL), "64"),
        (ReserveStock("h1", (), TTL), "lines"),
        (ReserveStock("h1", (LineRequest("A", 1),) * 101, TTL), "100"),
        (ReserveStock("h1", (LineRequest("A", 0),), TTL), "lines.0.quantity"),
        (ReserveStock("h1", (LineRequest("A", 1), LineRequest("A", True)), TTL), "lines.1"),
        (ReserveStock("h1", (LineRequest("Ä", 1),), TTL), "lines.0.sku"),
        (ReserveStock("h1", (LineRequest("A", 1, ""),), TTL), "lines.0.location"),
        (ReserveStock("h1", LINE, limits.TTL_MS_MIN - 1_000), "ttl_seconds"),
        (ReserveStock("h1", LINE, limits.TTL_MS_MAX + 1_000), "ttl_seconds"),
        (ReserveStock("h1", LINE, 1_500), "whole seconds"),
        (ReserveStock("h1", LINE, TTL, "r" * 257), "reference"),
        (CommitHold(""), "1 character"),
        (ReleaseHold("h" * 65), "64"),
        (ExtendHold("h1", 0), "ttl_seconds"),
        (ExtendHold("h1", limits.TTL_MS_MAX + 1_000), "ttl_seconds"),
        (SetThreshold("A", "berlin", -1), "low_stock_below"),
        (SetThreshold("A", "berlin", limits.ON_HAND_MAX + 1), "low_stock_below"),
        (SetThreshold("A", "berlin", True), "low_stock_below"),
        (SetThreshold("A", "ber lin", 1), "pattern"),
        (ExpireHolds(10), "cannot be sent by a client"),
        (PruneHolds(0, 10), "cannot be sent by a client"),
    ],
    ids=repr,
)
def test_a_command_outside_the_contract_is_refused_with_a_readable_reason(
    command: Command, words: str
) -> None:
    assert words in _refusal(command)


def test_an_extension_of_a_fraction_of_a_second_is_refused_like_a_hold() -> None:
    assert "whole seconds" in _refusal(ExtendHold("h1", 1_500))


def test_a_transfer_to_the_same_location_is_refused_at_the_boundary() -> None:
    assert "differ" in _refusal(TransferStock("A", "berlin", "berlin", 1))


@pytest.mark.parametrize(
    "command",
    [
        ReserveStock("h1", LINE, "60000"),  # type: ignore[arg-type]
        ReserveStock("h1", LINE, None),  # type: ignore[arg-type]
        ReserveStock("h1", LINE, 60_000.0),  # type: ignore[arg-type]
        ReserveStock("h1", LINE, True),  # a bool is an int to the type checker
        ExtendHold("h1", "5000"),  # type: ignore[arg-type]
        ExtendHold("h1", limits.TTL_MS_MAX + 500),
    ],
    ids=repr,
)
def test_a_ttl_that_is_not_whole_seconds_is_refused_with_a_reason_not_a_crash(
    command: Command,
) -> None:
    assert "ttl" in _refusal(command)


@pytest.mark.parametrize(
    "lines",
    [(("A", 1),), ("A",), [LineRequest("A", 1), {"sku": "A", "quantity": 1}], "A"],
    ids=repr,
)
def test_hold_lines_of_the_wrong_shape_are_refused_with_a_reason_not_a_crash(
    lines: object,
) -> None:
    assert "lines" in _refusal(ReserveStock("h1", lines, TTL))  # type: ignore[arg-type]


def test_something_that_is_not_a_command_is_refused() -> None:
    assert "cannot be sent" in _refusal(("adjust", "A", "berlin", 1))  # type: ignore[arg-type]
