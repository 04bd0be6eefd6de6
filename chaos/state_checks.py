"""The checks of a chaos run against what the service holds at the end: every acknowledged
reservation change present and every status explained, `reserved` and `on_hand` accounted for,
the change feed a chain from zero (and old cursors continuing it), every restock job done once
(and the files to refuse refused), every shard file intact. Pure, like the checker."""

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from chaos.history import History, Kind, Outcome
from chaos.verdict import FinalState, Level, Violation

# Units of a reservation that still holds them: pending ones (across shards) hold too.
HOLDING = frozenset({"active", "pending"})


# -- reservations -----------------------------------------------------------------------------


def acknowledged_holds(
    history: History, final: FinalState, checked: Counter[str]
) -> Iterator[Violation]:
    """An acknowledged reservation exists; an acknowledged commit or release is its status."""
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


def hold_statuses(
    history: History, final: FinalState, checked: Counter[str]
) -> Iterator[Violation]:
    """Once settled, no reservation is `pending`, and each ended one is explained: committed or
    released by an acknowledged request, expired at or after its deadline (by its home shard's
    clock, which decides it and writes the event)."""
    wanted = {Kind.COMMIT: "committed", Kind.RELEASE: "released"}
    asked: dict[str, set[str]] = defaultdict(set)
    for op in history.mutations():
        if op.kind in wanted and op.final_outcome is Outcome.OK and op.hold_id:
            asked[op.hold_id].add(wanted[op.kind])
    expired_at: dict[str, list[str]] = defaultdict(list)
    for event in final.feed:
        hold_id = event.get("reservation_id")
        home = final.home_shards.get(hold_id or "")
        if event["type"] == "reservation.expired" and home in (None, event["shard"]):
            expired_at[hold_id or ""].append(event["at"])
    for hold_id, view in sorted(final.holds.items()):
        if view is None:
            continue
        checked["reservation statuses"] += 1
        status = view["status"]
        if status == "pending":
            yield Violation("status", f"{hold_id} is still pending after the run settled")
        elif status in ("committed", "released") and status not in asked[hold_id]:
            yield Violation("status", f"{hold_id} is {status}, but no such request was answered")
        elif status == "expired" and not any(
            _moment(at) >= _moment(view["expires_at"]) for at in expired_at[hold_id]
        ):
            yield Violation(
                "status",
                f"{hold_id} expired at {expired_at[hold_id] or 'no event'}, "
                f"before its deadline {view['expires_at']}",
            )


def _moment(rfc3339: str) -> datetime:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))


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


def reserved_levels(final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
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


def conservation(history: History, final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
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


def feed_references(
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


def feed_chains(final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
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
        # A level is created by its first change: it starts from nothing.
        previous = after.get(level, {"on_hand": 0, "reserved": 0})
        before = {name: event["before"][name] for name in ("on_hand", "reserved")}
        if previous != before:
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


Identity = tuple[Any, ...]


def identity(event: dict[str, Any]) -> Identity:
    """What tells one event from another, within its shard's order."""
    return tuple(event.get(name) for name in ("shard", "lsn", "type", "sku", "location", "version"))


def cursor_reads(
    feed: list[dict[str, Any]], reads: list[dict[str, Any]], checked: Counter[str]
) -> Iterator[Violation]:
    """A page read from an old cursor continues each shard's events exactly where the follower
    stood when it took the cursor (no gap, no repeat), or is 410 `cursor-expired`."""
    by_shard: dict[int, list[Identity]] = {}
    for event in feed:
        by_shard.setdefault(event["shard"], []).append(identity(event))
    for read in reads:
        if read["status"] == 0 or read["status"] >= 500:
            continue
        checked["old cursors read"] += 1
        if read["status"] == 410 and read["problem"] == "cursor-expired":
            checked["old cursors expired"] += 1
            continue
        if read["status"] != 200:
            yield Violation("cursor", f"an old cursor got {read['status']} {read['problem']}")
            continue
        seen: Counter[int] = Counter()
        for item in read["events"]:
            shard = item[0]
            at = read["counts"].get(shard, 0) + seen[shard]
            seen[shard] += 1
            expected = by_shard.get(shard, [])[at : at + 1]
            if [item] != expected:
                yield Violation(
                    "cursor",
                    f"a cursor taken at {read['taken_at']:.1f} s, read at {read['read_at']:.1f} s"
                    f" gave {item} as shard {shard}'s event {at}, not {expected}",
                )
                break


# -- restock jobs and shard files ------------------------------------------------------------


def restocks(final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
    """Every job applied each row of its file once (one event each); a file the run expected
    refused (one that breaks late, or another file under a used job id) changed nothing: its
    run failed, and the job's events are only those of the file it first ran."""
    events: Counter[str] = Counter()
    for event in final.feed:
        if (event.get("reference") or "").startswith("restock:"):
            events[event["reference"].removeprefix("restock:")] += 1
    for job in final.restock_jobs:
        checked["restock jobs"] += 1
        found = events[job["job_id"]]
        if job.get("expect") == "refused":
            kept = job["rows_kept"]
            if job["exit_code"] == 0 or found != kept or job["rows_applied"] not in (None, kept):
                yield Violation(
                    "restock", f"{job['what']}: not refused whole ({found} events): {job}"
                )
        elif job["status"] != "succeeded" or not job["rows_applied"] == job["rows_total"] == found:
            yield Violation("restock", f"job with {found} events: {job}")


def integrity(final: FinalState, checked: Counter[str]) -> Iterator[Violation]:
    for path, result in sorted(final.integrity.items()):
        checked["shard files"] += 1
        if result != "ok":
            yield Violation("integrity", f"{path}: {result}")
