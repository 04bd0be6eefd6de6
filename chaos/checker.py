"""The checker, in the style of Jepsen's bank test: a history and the final state in, the
violations out. Pure: no HTTP, no Ray, no clock.

What must hold (see docs/chaos.md):
- every SKU view any client saw: no quantity negative, `reserved <= on_hand`,
  `available == on_hand - reserved`, totals the sums of the locations;
- versions never go backwards per SKU: a read that began after another ended sees at least its
  version;
- every mutation with an unknown outcome was resolved by sending it again with its key;
- every acknowledged change is present: an acknowledged reservation exists, an acknowledged
  commit or release is the reservation's final status, an acknowledged adjustment or transfer is
  in the change feed exactly once (and a refused one not at all);
- `reserved` equals the units of the reservations still holding, per SKU-location;
- conservation: `on_hand == initial + acknowledged adjustments and transfers + restocked -
  committed units`, per SKU-location;
- the change feed is a chain per SKU-location (each event's `before` is the previous `after`),
  ending at the final state, with each shard's LSNs in order;
- a request sent again with its key gets the first answer back;
- every restock job succeeded with every row applied once;
- `PRAGMA integrity_check` is ok on every shard file.
"""

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chaos.history import History, Kind, Op, Outcome

Level = tuple[str, str]
# Units of a reservation that still holds them: pending ones (across shards) hold too.
HOLDING = frozenset({"active", "pending"})
# Violations of one check listed in the report at most (all are counted).
DETAILS_PER_CHECK_MAX = 20


@dataclass
class FinalState:
    """What the service holds once the run is over and everything has settled."""

    skus: dict[str, dict[str, Any] | None]
    holds: dict[str, dict[str, Any] | None]
    feed: list[dict[str, Any]]
    integrity: dict[str, str]
    initial: dict[Level, int]
    # Each restock job's record, with `added`: the units it added per SKU-location, or None
    # when only some of its rows were applied (conservation then cannot be checked).
    restock_jobs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def restocked(self) -> Counter[Level] | None:
        added: Counter[Level] = Counter()
        for job in self.restock_jobs:
            if job["added"] is None:
                return None
            added.update(job["added"])
        return added


@dataclass
class Violation:
    check: str
    detail: str


@dataclass
class Verdict:
    violations: list[Violation]
    checked: Counter[str]

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_check(self) -> dict[str, int]:
        return dict(Counter(v.check for v in self.violations))

    def details(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = defaultdict(list)
        for violation in self.violations:
            if len(found[violation.check]) < DETAILS_PER_CHECK_MAX:
                found[violation.check].append(violation.detail)
        return dict(found)


def check(history: History, final: FinalState) -> Verdict:
    checked: Counter[str] = Counter()
    violations = [
        *_views(history, final, checked),
        *_versions(history, final, checked),
        *_unresolved(history, checked),
        *_holds(history, final, checked),
        *_reserved(final, checked),
        *_conservation(history, final, checked),
        *_feed_references(history, final, checked),
        *_feed_chains(final, checked),
        *_replays(history, checked),
        *_restocks(final, checked),
        *_integrity(final, checked),
    ]
    return Verdict(violations, checked)


# -- what clients saw ------------------------------------------------------------------------


def sku_views(op: Op) -> Iterator[dict[str, Any]]:
    """The SKU views in an op's own answer (not a replayed one: that is an old view)."""
    if op.outcome is not Outcome.OK or not isinstance(op.answer, dict):
        return
    if op.kind in (Kind.READ, Kind.ADJUST, Kind.TRANSFER):
        yield op.answer
    elif op.kind is Kind.QUERY:
        yield from op.answer.get("items", [])


def view_problems(view: dict[str, Any]) -> Iterator[str]:
    sums = {"on_hand": 0, "reserved": 0, "available": 0}
    for level in view["locations"]:
        on_hand, reserved, available = level["on_hand"], level["reserved"], level["available"]
        if min(on_hand, reserved, available) < 0:
            yield f"{view['sku']}@{level['location']} negative: {level}"
        if reserved > on_hand:
            yield f"{view['sku']}@{level['location']} reserved > on_hand: {level}"
        if available != on_hand - reserved:
            yield f"{view['sku']}@{level['location']} available != on_hand - reserved: {level}"
        for name in sums:
            sums[name] += level[name]
    if sums != {name: view["totals"][name] for name in sums}:
        yield f"{view['sku']} totals {view['totals']} are not the sums {sums}"


def _views(history: History, final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
    finals = (seen for seen in final.skus.values() if seen is not None)
    for view in (*(v for op in history.ops for v in sku_views(op)), *finals):
        checked["views"] += 1
        for problem in view_problems(view):
            yield Violation("view", problem)


def _versions(history: History, final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
    """Per SKU: no view that began after another one ended has an older version."""
    seen: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for op in history.ops:
        for view in sku_views(op):
            seen[view["sku"]].append((op.started, op.ended, view["version"]))
    after_all = max((op.ended for op in history.ops), default=0.0) + 1.0
    for sku, last in final.skus.items():
        if last is not None:
            seen[sku].append((after_all, after_all, last["version"]))
    for sku, views in seen.items():
        checked["version sequences"] += 1
        yield from _version_order(sku, views)


def _version_order(sku: str, views: list[tuple[float, float, int]]) -> Iterator[Violation]:
    by_end = sorted((ended, version) for _, ended, version in views)
    ends = [ended for ended, _ in by_end]
    # best[i]: the highest version among the first i views to end.
    best = [0]
    for _, version in by_end:
        best.append(max(best[-1], version))
    for started, _, version in views:
        before = best[bisect.bisect_left(ends, started)]
        if version < before:
            yield Violation(
                "version",
                f"{sku}: version {version} seen at {started:.3f} s after {before} was seen",
            )


def _unresolved(history: History, checked: Counter[str]) -> Iterator[Violation]:
    for op in history.mutations():
        if op.outcome is Outcome.UNKNOWN:
            checked["unknown outcomes"] += 1
            if op.final_outcome is Outcome.UNKNOWN:
                yield Violation("unresolved", f"op {op.op_id} {op.kind} {op.path}: no answer")


# -- reservations -----------------------------------------------------------------------------


def _holds(history: History, final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
    wanted = {Kind.COMMIT: "committed", Kind.RELEASE: "released"}
    for op in history.mutations():
        if op.kind not in (Kind.RESERVE, *wanted) or op.final_outcome is not Outcome.OK:
            continue
        checked["acknowledged reservation changes"] += 1
        hold_id = op.hold_id
        view = final.holds.get(hold_id) if hold_id else None
        if view is None:
            yield Violation("lost", f"op {op.op_id} {op.kind}: reservation {hold_id} is gone")
        elif op.kind in wanted and view["status"] != wanted[op.kind]:
            yield Violation(
                "lost",
                f"op {op.op_id} {op.kind} of {hold_id} acknowledged, "
                f"but the reservation ended {view['status']}",
            )


def units_held(holds: Iterable[dict[str, Any] | None], statuses: frozenset[str]) -> Counter[Level]:
    units: Counter[Level] = Counter()
    for view in holds:
        if view is not None and view["status"] in statuses:
            for line in view["lines"]:
                units[line["sku"], line["location"]] += line["quantity"]
    return units


def final_levels(final: FinalState) -> dict[Level, dict[str, Any]]:
    return {
        (view["sku"], level["location"]): level
        for view in final.skus.values()
        if view is not None
        for level in view["locations"]
    }


def _reserved(final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
    held = units_held(final.holds.values(), HOLDING)
    levels = final_levels(final)
    for level in sorted(set(levels) | set(held)):
        checked["reserved levels"] += 1
        reserved = levels[level]["reserved"] if level in levels else 0
        if reserved != held[level]:
            yield Violation(
                "reserved",
                f"{level}: reserved {reserved}, but active reservations hold {held[level]}"
                + _reserved_differences(final, level),
            )


def _reserved_differences(final: FinalState, level: Level) -> str:
    """Which reservations the difference is made of: those whose units on `level`, summed over
    the feed's events up to the final read's version (later expiries are not in that read),
    differ from what their final status says they hold (a reservation the history never learned
    of has no status), and the units events without a reservation moved."""
    read_version = (final.skus.get(level[0]) or {}).get("version", 0)
    by_feed: Counter[str] = Counter()
    # Units moved by events that name no reservation, per event type.
    unattributed: Counter[str] = Counter()
    for event in final.feed:
        if event["before"] is None or (event["sku"], event["location"]) != level:
            continue
        if event["version"] <= read_version:
            moved = event["after"]["reserved"] - event["before"]["reserved"]
            hold_id = event.get("reservation_id")
            if hold_id:
                by_feed[hold_id] += moved
            else:
                unattributed[event["type"]] += moved
    found = [
        f"no reservation ({kind}) moved {units}"
        for kind, units in sorted(unattributed.items())
        if units
    ]
    for hold_id, units in sorted(by_feed.items()):
        view = final.holds.get(hold_id)
        holds = units_held([view], HOLDING)[level] if view is not None else 0
        if units != holds:
            status = view["status"] if view is not None else "not in the history"
            found.append(f"{hold_id} ({status}) holds {units} by the feed, {holds} by its status")
    return "; " + "; ".join(found) if found else ""


# -- conservation -----------------------------------------------------------------------------


def acknowledged_changes(history: History) -> Counter[Level]:
    """Units each acknowledged adjustment and transfer moved, per SKU-location."""
    moved: Counter[Level] = Counter()
    for op in history.mutations():
        if op.final_outcome is not Outcome.OK or op.body is None:
            continue
        if op.kind in (Kind.ADJUST, Kind.TRANSFER):
            sku = op.path.split("/")[3]
        if op.kind is Kind.ADJUST:
            moved[sku, op.body["location"]] += op.body["delta"]
        elif op.kind is Kind.TRANSFER:
            moved[sku, op.body["from_location"]] -= op.body["quantity"]
            moved[sku, op.body["to_location"]] += op.body["quantity"]
    return moved


def _conservation(
    history: History, final: FinalState, checked: Counter[str]
) -> Iterator[Violation]:
    restocked = final.restocked
    if restocked is None:
        yield Violation("conservation", "a restock job applied only some of its rows")
        return
    moved = acknowledged_changes(history)
    sold = units_held(final.holds.values(), frozenset({"committed"}))
    levels = final_levels(final)
    for level in sorted(set(final.initial) | set(moved) | set(levels) | set(sold)):
        checked["conserved levels"] += 1
        expected = final.initial.get(level, 0) + moved[level] + restocked[level] - sold[level]
        on_hand = levels[level]["on_hand"] if level in levels else 0
        if on_hand != expected:
            yield Violation(
                "conservation",
                f"{level}: on_hand {on_hand}, expected {expected} (initial "
                f"{final.initial.get(level, 0)}, moved {moved[level]}, restocked "
                f"{restocked[level]}, committed {sold[level]})",
            )


# -- the change feed --------------------------------------------------------------------------


def _feed_references(
    history: History, final: FinalState, checked: Counter[str]
) -> Iterator[Violation]:
    """Adjustments and transfers carry their op's reference: acknowledged ones appear once
    (a transfer as its two events), refused ones never."""
    events: Counter[str] = Counter()
    for event in final.feed:
        if event["type"] in ("stock.adjusted", "stock.transferred") and event["reference"]:
            events[event["reference"]] += 1
    for op in history.mutations():
        if op.kind not in (Kind.ADJUST, Kind.TRANSFER) or op.body is None:
            continue
        checked["referenced changes"] += 1
        reference = op.body["reference"]
        expected = {Outcome.OK: 1 if op.kind is Kind.ADJUST else 2, Outcome.FAIL: 0}
        wanted = expected.get(op.final_outcome)
        if wanted is not None and events[reference] != wanted:
            yield Violation(
                "feed",
                f"op {op.op_id} {op.kind} {op.final_outcome}: {events[reference]} events "
                f"with reference {reference}, expected {wanted}",
            )


def _feed_chains(final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
    """Each event's `before` is the previous event's `after`, per SKU-location; the chain
    reaches the final state at the final read's version (expiries may land after that read)."""
    versions = {sku: view["version"] for sku, view in final.skus.items() if view is not None}
    last_lsn: dict[int, int] = {}
    after: dict[Level, dict[str, int]] = {}
    at_read: dict[Level, dict[str, int]] = {}
    for event in final.feed:
        shard, lsn = event["shard"], event["lsn"]
        if lsn < last_lsn.get(shard, 0):
            yield Violation("feed", f"shard {shard}: lsn {lsn} after {last_lsn[shard]}")
        last_lsn[shard] = lsn
        if event["before"] is None:  # stock.low / stock.recovered
            continue
        checked["feed events"] += 1
        level = (event["sku"], event["location"])
        previous = after.get(level)
        before = {name: event["before"][name] for name in ("on_hand", "reserved")}
        if previous is not None and previous != before:
            yield Violation(
                "feed",
                f"{level} lsn {shard}/{lsn} {event['type']}: before {before}, "
                f"but the previous event left {previous}",
            )
        after[level] = {name: event["after"][name] for name in ("on_hand", "reserved")}
        if event["version"] <= versions.get(level[0], 0):
            at_read[level] = after[level]
    for level, state in final_levels(final).items():
        ended = at_read.get(level)
        now = {name: state[name] for name in ("on_hand", "reserved")}
        if ended != now:
            yield Violation(
                "feed", f"{level}: the feed reaches {ended} at the final read, the state is {now}"
            )


# -- the rest ---------------------------------------------------------------------------------


def _replays(history: History, checked: Counter[str]) -> Iterator[Violation]:
    by_id = {op.op_id: op for op in history.ops}
    for op in history.ops:
        if op.kind is not Kind.REPLAY or op.replay_of is None or op.outcome is not Outcome.OK:
            continue
        first = by_id[op.replay_of]
        if first.outcome is not Outcome.OK:
            continue
        checked["replays"] += 1
        if (op.status, op.answer) != (first.status, first.answer):
            yield Violation(
                "replay",
                f"op {op.op_id} sent op {first.op_id} again with its key and got "
                f"{op.status} {op.answer}, not {first.status} {first.answer}",
            )


def _restocks(final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
    for job in final.restock_jobs:
        checked["restock jobs"] += 1
        if job["status"] != "succeeded" or job["rows_applied"] != job["rows_total"]:
            yield Violation("restock", f"job {job}")


def _integrity(final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
    for path, result in sorted(final.integrity.items()):
        checked["shard files"] += 1
        if result != "ok":
            yield Violation("integrity", f"{path}: {result}")
