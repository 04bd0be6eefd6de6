"""The checker, in the style of Jepsen's bank test: a history and the final state in, the
violations out. Pure: no HTTP, no Ray, no clock. docs/chaos.md lists what must hold; this module
checks what clients saw, `chaos.refusals` every refusal, `chaos.state_checks` what the service
holds at the end."""

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

from chaos import refusals, state_checks
from chaos.history import History, Kind, Op, Outcome
from chaos.verdict import FinalState, Verdict, Violation


def check(history: History, final: FinalState) -> Verdict:
    """Every check, over what clients saw and what the service holds at the end."""
    checked: Counter[str] = Counter()
    violations = [
        *_views(history, final, checked),
        *_versions(history, final, checked),
        *_unresolved(history, checked),
        *refusals.refusals(history, final, checked),
        *refusals.refused_changed_nothing(history, final, checked),
        *refusals.key_reuses(history, checked),
        *_retry_after(history, checked),
        *state_checks.acknowledged_holds(history, final, checked),
        *state_checks.hold_statuses(history, final, checked),
        *state_checks.reserved_levels(final, checked),
        *state_checks.conservation(history, final, checked),
        *state_checks.feed_references(history, final, checked),
        *state_checks.feed_chains(final, checked),
        *state_checks.cursor_reads(final.feed, final.cursor_reads, checked),
        *([Violation("cursor", final.feed_broken)] if final.feed_broken else []),
        *_replays(history, checked),
        *state_checks.restocks(final, checked),
        *state_checks.integrity(final, checked),
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
    for op in history.keyed():
        if op.outcome is Outcome.UNKNOWN:
            checked["unknown outcomes"] += 1
            if op.final_outcome is Outcome.UNKNOWN:
                last = op.final
                said = last.answer.get("detail") if isinstance(last.answer, dict) else None
                yield Violation(
                    "unresolved",
                    f"op {op.op_id} {op.kind} {op.path}: still {last.status or 'no answer'} "
                    f"after {1 + len(op.retries)} attempts ({said})",
                )


def _retry_after(history: History, checked: Counter[str]) -> Iterator[Violation]:
    """The service's 429 and 503 answers (problem+json: not a proxy's) carry Retry-After."""
    for op in history.ops:
        for attempt in op.attempts():
            if attempt.status in (429, 503) and attempt.problem is not None:
                checked["answers to retry later"] += 1
                if "Retry-After" not in attempt.headers:
                    yield Violation(
                        "headers",
                        f"op {op.op_id} {op.kind}: {attempt.status} {attempt.problem} "
                        "without Retry-After",
                    )


def _replays(history: History, checked: Counter[str]) -> Iterator[Violation]:
    """A replay of an acknowledged request, whatever it is answered (but no answer, or a
    5xx), gets the stored status and body back, marked `Idempotent-Replayed: true`."""
    by_id = {op.op_id: op for op in history.ops}
    for op in history.ops:
        if op.kind is not Kind.REPLAY or op.replay_of is None:
            continue
        got, stored = op.final, by_id[op.replay_of].final
        if got.outcome is Outcome.UNKNOWN or stored.outcome is not Outcome.OK:
            continue
        checked["replays"] += 1
        if (got.status, got.answer) != (stored.status, stored.answer):
            yield Violation(
                "replay",
                f"op {op.op_id} sent op {op.replay_of} again with its key and got "
                f"{got.status} {got.answer}, not {stored.status} {stored.answer}",
            )
        elif got.headers.get("Idempotent-Replayed") != "true":
            yield Violation(
                "replay",
                f"op {op.op_id} replayed op {op.replay_of}'s answer without "
                f"Idempotent-Replayed: true (headers {got.headers})",
            )
