"""The checks of refusals: each 4xx a client got is one the contract allows for its request, an
`insufficient-stock` is true of the stock the feed shows, a `reservation-not-active` names the
status the reservation ended in, a refused request changed nothing, and a key reused with
another body is refused. Pure, like the checker."""

from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from chaos.history import Attempt, History, Kind, Op, Outcome
from chaos.verdict import FinalState, Level, Violation

STOCK_SHORT = (409, "insufficient-stock")
NOT_ACTIVE = (409, "reservation-not-active")
KEY_REUSED = (422, "idempotency-key-reused")
# The refusals a request of each kind may get (docs/api-contract.md); reads may get none.
ALLOWED: dict[Kind, frozenset[tuple[int, str | None]]] = {
    Kind.RESERVE: frozenset({STOCK_SHORT}),
    Kind.ADJUST: frozenset({STOCK_SHORT}),
    Kind.TRANSFER: frozenset({STOCK_SHORT}),
    Kind.COMMIT: frozenset({NOT_ACTIVE}),
    Kind.RELEASE: frozenset({NOT_ACTIVE}),
    Kind.EXTEND: frozenset({NOT_ACTIVE}),
    Kind.KEY_REUSE: frozenset({KEY_REUSED}),
}
# Load shed before the request ran refuses nothing in particular: allowed to any request.
SHED = frozenset({(429, "rate-limited"), (429, "overloaded")})
ENDED = frozenset({"committed", "released", "expired"})
# The status a repeat of each request answers 200 from, so it can never be its refusal.
REPEATABLE = {Kind.COMMIT: "committed", Kind.RELEASE: "released"}


def least_available(feed: list[dict[str, Any]]) -> dict[Level, int]:
    """Per SKU-location, the least `available` it had from the moment the run had stocked its
    SKU on (the SKU's last `stock.set`, which only stocking gives): every request of the load
    came later, so none of them can have found less."""
    stocked: dict[str, int] = defaultdict(int)
    for event in feed:
        if event["type"] == "stock.set":
            stocked[event["sku"]] = max(stocked[event["sku"]], event["version"])
    at_stocking: dict[Level, int] = {}
    least: dict[Level, int] = {}
    for event in feed:
        if event["before"] is None:
            continue
        level = (event["sku"], event["location"])
        after = event["after"]["on_hand"] - event["after"]["reserved"]
        if event["version"] <= stocked[event["sku"]]:
            at_stocking[level] = after
            continue
        before = event["before"]["on_hand"] - event["before"]["reserved"]
        least[level] = min(least.get(level, at_stocking.get(level, before)), after)
    return at_stocking | least


def refusals(history: History, final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
    """Every refusal of every attempt (replays are compared with their first answer instead)."""
    least = least_available(final.feed)
    for op in history.ops:
        if op.kind is Kind.REPLAY:
            continue
        for attempt in op.attempts():
            if attempt.outcome is not Outcome.FAIL:
                continue
            checked["refusals"] += 1
            refusal = (attempt.status, attempt.problem)
            if refusal in SHED:
                continue
            if refusal not in ALLOWED.get(op.kind, frozenset()):
                yield _wrong(op, attempt, "not a refusal this request can get")
            elif refusal == STOCK_SHORT:
                yield from _short_stock(op, attempt, least)
            elif refusal == NOT_ACTIVE:
                yield from _not_active(op, attempt, final)


def _wrong(op: Op, attempt: Attempt, why: str) -> Violation:
    answer = str(attempt.answer)[:300]
    return Violation(
        "refusal", f"op {op.op_id} {op.kind} {op.path} got {attempt.status} {answer}: {why}"
    )


def _short_stock(op: Op, attempt: Attempt, least: dict[Level, int]) -> Iterator[Violation]:
    """The stock the refusal says was short was short at some moment of the run."""
    body = op.body or {}
    if op.kind in (Kind.ADJUST, Kind.TRANSFER):
        sku = op.path.split("/")[3]
        location = body["location"] if op.kind is Kind.ADJUST else body["from_location"]
        needed = -body["delta"] if op.kind is Kind.ADJUST else body["quantity"]
        if least.get((sku, location), 0) >= needed:
            yield _wrong(op, attempt, f"{sku}@{location} never had less than {needed} available")
        return
    shortages = attempt.answer.get("lines") if isinstance(attempt.answer, dict) else None
    if not shortages:
        yield _wrong(op, attempt, "it names no short line")
        return
    requested = {line["sku"]: line for line in body["lines"]}
    for short in shortages:
        line = requested.get(short.get("sku"))
        if line is None or not 0 <= short.get("available", -1) < short.get("requested", 0):
            yield _wrong(op, attempt, f"{short} is not a short line of the request")
            return
        # A line without a location is short only if every location of its SKU is.
        locations = [line["location"]] if "location" in line else _locations(least, line["sku"])
        for location in locations:
            if least.get((line["sku"], location), 0) >= line["quantity"]:
                never = f"{line['sku']}@{location} never had less than {line['quantity']} available"
                yield _wrong(op, attempt, never)
                return


def _locations(least: dict[Level, int], sku: str) -> list[str]:
    return sorted(location for name, location in least if name == sku)


def _not_active(op: Op, attempt: Attempt, final: FinalState) -> Iterator[Violation]:
    """A reservation ends once: the status a refusal names is the one it ended in, and not
    the one a repeat of the request answers 200 from."""
    said = attempt.answer.get("reservation_status") if isinstance(attempt.answer, dict) else None
    view = final.holds.get(op.hold_id or "")
    ended = None if view is None else view["status"]
    if said not in ENDED or said != ended or said == REPEATABLE.get(op.kind):
        yield _wrong(op, attempt, f"the reservation ended {ended}, the refusal says {said}")


def refused_changed_nothing(
    history: History, final: FinalState, checked: Counter[str]
) -> Iterator[Violation]:
    """A refused reservation (a reused key's included) holds and sold nothing in the end, and
    a refused reused key's adjustment or transfer is not in the feed. (A refused adjustment or
    transfer of its own key is `state_checks.feed_references`'.)"""
    refused: dict[str, Op] = {}
    for op in history.ops:
        reference = (op.body or {}).get("reference")
        reserving = op.kind is Kind.RESERVE or op.kind is Kind.KEY_REUSE
        if reserving and reference and op.final_outcome is Outcome.FAIL:
            refused[reference] = op
    placed: dict[str, Op] = {}
    units: dict[str, int] = defaultdict(int)
    sold: set[str] = set()
    for event in final.feed:
        hold_id = event.get("reservation_id")
        by = refused.get(event.get("reference") or "")
        if by is not None and hold_id is None:
            yield Violation("refusal", f"op {by.op_id} {by.kind} was refused, but {event}")
        if event["type"] == "reservation.created" and by is not None and hold_id:
            placed[hold_id] = by
        if hold_id in placed and event["before"] is not None:
            units[hold_id] += event["after"]["reserved"] - event["before"]["reserved"]
            if event["type"] == "reservation.committed":
                sold.add(hold_id)
    checked["refused requests"] += len(refused)
    for hold_id, op in sorted(placed.items()):
        if units[hold_id] or hold_id in sold:
            yield Violation(
                "refusal",
                f"op {op.op_id} {op.kind} was refused, but reservation {hold_id} it placed "
                f"still holds {units[hold_id]} units or sold some",
            )


def key_reuses(history: History, checked: Counter[str]) -> Iterator[Violation]:
    """A key reused with another body is refused (a wrong refusal is `refusals`')."""
    for op in history.ops:
        if op.kind is not Kind.KEY_REUSE or op.final_outcome is Outcome.UNKNOWN:
            continue
        checked["reused keys"] += 1
        if op.final_outcome is Outcome.OK:
            first = op.replay_of
            yield Violation(
                "key-reuse",
                f"op {op.op_id} sent op {first}'s key with another body and got "
                f"{op.final.status} {str(op.final_answer)[:300]}, not 422",
            )
