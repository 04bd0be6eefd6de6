"""The checker on small hand-made histories: a consistent one passes, and each kind of broken
one is caught by the check meant for it."""

from copy import deepcopy
from typing import Any

import pytest

from chaos.checker import check
from chaos.history import Attempt, History, Kind, Op, problem_type
from chaos.verdict import FinalState

SKU = "A-1"


def level(location: str, on_hand: int, reserved: int = 0) -> dict[str, Any]:
    return {
        "location": location,
        "on_hand": on_hand,
        "reserved": reserved,
        "available": on_hand - reserved,
    }


def view(version: int, *levels: dict[str, Any]) -> dict[str, Any]:
    totals = {name: sum(lv[name] for lv in levels) for name in ("on_hand", "reserved", "available")}
    return {"sku": SKU, "version": version, "totals": totals, "locations": list(levels)}


def event(
    lsn: int, kind: str, before: tuple[int, int], after: tuple[int, int], version: int, **extra: Any
) -> dict[str, Any]:
    return {
        "shard": 0,
        "lsn": lsn,
        "type": kind,
        "sku": SKU,
        "location": "east",
        "before": {"on_hand": before[0], "reserved": before[1]},
        "after": {"on_hand": after[0], "reserved": after[1]},
        "version": version,
        "reference": extra.get("reference"),
        "reservation_id": extra.get("reservation_id"),
        "at": extra.get("at", f"2026-12-01T10:00:{lsn:02d}.000Z"),
    }


def problem(slug: str, status: int, **extensions: Any) -> dict[str, Any]:
    return {
        "type": f"/problems/{slug}",
        "title": slug,
        "status": status,
        "detail": slug,
    } | extensions


class Story:
    """A consistent little run: stock 10, +5 acknowledged, a reservation of 2, committed."""

    def __init__(self) -> None:
        self.history = History()
        self.add(Kind.READ, "GET", f"/v1/skus/{SKU}", None, 200, view(1, level("east", 10)))
        adjust = {"location": "east", "delta": 5, "reason": "correction", "reference": "ref-1"}
        self.add(
            Kind.ADJUST,
            "POST",
            f"/v1/skus/{SKU}/adjustments",
            adjust,
            200,
            view(2, level("east", 15)),
        )
        hold = {
            "reservation_id": "r_1",
            "status": "active",
            "expires_at": "2026-12-01T10:00:30.000Z",
            "lines": [{"sku": SKU, "location": "east", "quantity": 2}],
        }
        lines = [{"sku": SKU, "location": "east", "quantity": 2}]
        body = {"lines": lines, "ttl_seconds": 30, "reference": "ref-2"}
        self.add(Kind.RESERVE, "POST", "/v1/reservations", body, 201, hold)
        self.add(
            Kind.COMMIT,
            "POST",
            "/v1/reservations/r_1/commit",
            None,
            200,
            hold | {"status": "committed"},
        )
        self.add(Kind.READ, "GET", f"/v1/skus/{SKU}", None, 200, view(4, level("east", 13)))
        self.final = FinalState(
            skus={SKU: view(4, level("east", 13))},
            holds={"r_1": hold | {"status": "committed"}},
            feed=[
                event(1, "stock.set", (0, 0), (10, 0), 1),
                event(2, "stock.adjusted", (10, 0), (15, 0), 2, reference="ref-1"),
                event(3, "reservation.created", (15, 0), (15, 2), 3),
                event(4, "reservation.committed", (15, 2), (13, 0), 4),
            ],
            integrity={"shard-0000.sqlite3": "ok"},
            initial={(SKU, "east"): 10},
        )

    def hold(self, status: str) -> dict[str, Any]:
        hold = self.final.holds["r_1"]
        assert hold is not None
        return hold | {"status": status}

    def add(self, kind: Kind, method: str, path: str, body: Any, status: int, answer: Any) -> Op:
        op_id = len(self.history.ops)
        key = None if method == "GET" else f"k-{op_id}"
        op = Op(op_id, 0, kind, method, path, body, key, float(op_id))
        op.record(status, answer, {}, op_id + 0.5)
        self.history.ops.append(op)
        return op

    def reserve(self, quantity: int, status: int, answer: Any) -> Op:
        lines = [{"sku": SKU, "location": "east", "quantity": quantity}]
        body = {"lines": lines, "ttl_seconds": 30, "reference": f"ref-{len(self.history.ops)}"}
        return self.add(Kind.RESERVE, "POST", "/v1/reservations", body, status, answer)

    def checks(self) -> dict[str, int]:
        return check(self.history, self.final).by_check()


def test_a_consistent_history_passes() -> None:
    story = Story()
    verdict = check(story.history, story.final)
    assert verdict.ok, verdict.details()
    assert verdict.checked["feed events"] == 4
    assert verdict.checked["conserved levels"] == 1


def test_an_acknowledged_adjustment_that_is_gone_is_caught() -> None:
    story = Story()
    story.final.feed = [story.final.feed[0], *deepcopy(story.final.feed[2:])]
    for item in story.final.feed[1:]:
        item["before"]["on_hand"] -= 5
        item["after"]["on_hand"] -= 5
    story.final.skus[SKU] = view(4, level("east", 8))
    found = story.checks()
    assert found.get("conservation") == 1
    assert found.get("feed", 0) >= 1


def test_an_adjustment_applied_twice_is_caught() -> None:
    story = Story()
    twice = event(5, "stock.adjusted", (13, 0), (18, 0), 5, reference="ref-1")
    story.final.feed.append(twice)
    story.final.skus[SKU] = view(5, level("east", 18))
    found = story.checks()
    assert found.get("conservation") == 1
    assert found.get("feed") == 1


def test_a_negative_or_overcommitted_view_is_caught() -> None:
    story = Story()
    story.add(Kind.READ, "GET", f"/v1/skus/{SKU}", None, 200, view(4, level("east", 1, 2)))
    assert story.checks() == {"view": 2}  # reserved > on_hand, and available negative


def test_a_version_going_backwards_is_caught() -> None:
    story = Story()
    story.add(Kind.READ, "GET", f"/v1/skus/{SKU}", None, 200, view(2, level("east", 15)))
    assert story.checks() == {"version": 1}


def test_overlapping_reads_may_see_versions_in_either_order() -> None:
    story = Story()
    late = story.add(Kind.READ, "GET", f"/v1/skus/{SKU}", None, 200, view(3, level("east", 15, 2)))
    late.started = 3.2  # began before the commit (op 3) ended at 3.5
    assert story.checks() == {}


def test_an_unknown_outcome_left_unresolved_is_caught() -> None:
    story = Story()
    body = {"location": "east", "delta": -20, "reason": "correction", "reference": "ref-9"}
    op = story.add(Kind.ADJUST, "POST", f"/v1/skus/{SKU}/adjustments", body, 0, None)
    assert story.checks() == {"unresolved": 1}
    unavailable = problem("shard-unavailable", 503)
    op.retries.append(
        Attempt(6.0, 6.1, 503, unavailable, {"Retry-After": "1"}, "shard-unavailable")
    )
    assert story.checks() == {"unresolved": 1}
    short = problem("insufficient-stock", 409)
    op.retries.append(Attempt(7.0, 7.1, 409, short, {}, "insufficient-stock", after_load=True))
    assert story.checks() == {}


def test_an_acknowledged_commit_that_did_not_stick_is_caught() -> None:
    story = Story()
    story.final.holds["r_1"] = story.hold("expired")
    found = story.checks()
    assert found.get("lost") == 1
    assert found.get("conservation") == 1


def test_reserved_must_match_the_reservations_holding_units() -> None:
    story = Story()
    story.final.holds["r_1"] = story.hold("active")
    found = story.checks()
    assert found.get("reserved") == 1


def test_a_reserved_violation_names_the_reservation_the_feed_disagrees_with() -> None:
    story = Story()
    # r_1 committed, but its units stayed reserved: the commit took stock and left `reserved`.
    story.final.feed[2]["reservation_id"] = "r_1"
    story.final.feed[3]["reservation_id"] = "r_1"
    story.final.feed[3]["after"]["reserved"] = 2
    story.final.skus[SKU] = view(4, level("east", 13, reserved=2))
    details = check(story.history, story.final).details()
    assert any(
        "r_1 (committed) holds 2 by the feed, 0 by its status" in d for d in details["reserved"]
    ), details


def test_a_reserved_detail_reads_the_feed_up_to_the_final_read() -> None:
    story = Story()
    # r_2 is active and holds 2; one more unit is reserved by an event naming no reservation;
    # r_2 expires after the final read, which the detail must not count.
    story.final.feed[2]["reservation_id"] = story.final.feed[3]["reservation_id"] = "r_1"
    story.final.holds["r_2"] = story.hold("active") | {"reservation_id": "r_2"}
    story.final.feed += [
        event(5, "reservation.created", (13, 0), (13, 2), 5) | {"reservation_id": "r_2"},
        event(6, "reservation.created", (13, 2), (13, 3), 6),
        event(7, "reservation.expired", (13, 3), (13, 1), 7) | {"reservation_id": "r_2"},
    ]
    story.final.skus[SKU] = view(6, level("east", 13, reserved=3))
    details = check(story.history, story.final).details()["reserved"]
    assert details == [
        "('A-1', 'east'): reserved 3, but active reservations hold 2; "
        "no reservation (reservation.created) moved 1"
    ]


def test_a_replay_that_answers_differently_is_caught() -> None:
    story = Story()
    first = story.history.ops[1]
    replay = story.add(Kind.REPLAY, "POST", first.path, first.body, 200, view(5, level("east", 18)))
    replay.replay_of = first.op_id
    replay.headers = {"Idempotent-Replayed": "true"}
    assert story.checks().get("replay") == 1
    replay.answer = first.answer
    assert story.checks() == {}
    replay.headers = {}
    assert story.checks() == {"replay": 1}  # the stored answer, but not said to be one


def test_a_replay_refused_instead_of_answered_is_caught() -> None:
    story = Story()
    first = story.history.ops[2]  # the reservation, answered 201
    reused = problem("idempotency-key-reused", 422)
    replay = story.add(Kind.REPLAY, first.method, first.path, first.body, 422, reused)
    replay.replay_of = first.op_id
    assert story.checks() == {"replay": 1}


@pytest.mark.parametrize(
    ("change", "check_name"),
    [
        (
            {"integrity": {"shard-0000.sqlite3": "*** in database main *** Page 7 is never used"}},
            "integrity",
        ),
        (
            {
                "restock_jobs": [
                    {
                        "job_id": "rj-1",
                        "status": "failed",
                        "rows_total": 4,
                        "rows_applied": 0,
                        "added": {},
                    }
                ]
            },
            "restock",
        ),
    ],
)
def test_file_and_restock_checks(change: dict[str, Any], check_name: str) -> None:
    story = Story()
    for name, value in change.items():
        setattr(story.final, name, value)
    assert story.checks() == {check_name: 1}


def test_restocked_units_count_and_a_half_applied_job_is_flagged() -> None:
    story = Story()
    job = {
        "job_id": "rj-1",
        "status": "succeeded",
        "rows_total": 3,
        "rows_applied": 3,
        "added": {(SKU, "east"): 3},
    }
    story.final.restock_jobs = [job]
    assert story.checks() == {"conservation": 1, "restock": 1}  # 3 units and rows not there
    story.final.skus[SKU] = view(4, level("east", 16))
    story.final.feed += [
        event(5, "stock.adjusted", (13 + n, 0), (14 + n, 0), 4, reference="restock:rj-1")
        for n in range(3)
    ]
    assert story.checks() == {}
    story.final.restock_jobs = [job | {"status": "failed", "rows_applied": 1, "added": None}]
    assert story.checks() == {"conservation": 1, "restock": 1}


def test_a_history_survives_its_json_lines() -> None:
    story = Story()
    again = History.of_lines(story.history.lines())
    assert again == story.history


# -- refusals ------------------------------------------------------------------------------
# The Story's level east has 10 units available once stocked, and never fewer.


def short(requested: int, available: int = 10) -> dict[str, Any]:
    line = {"sku": SKU, "location": "east", "requested": requested, "available": available}
    return problem("insufficient-stock", 409, lines=[line])


def test_a_reservation_refused_with_another_409_is_caught() -> None:
    story = Story()
    story.reserve(1, 409, problem("reservation-not-active", 409))
    assert story.checks() == {"refusal": 1}


def test_a_reservation_refused_while_stock_was_ample_is_caught() -> None:
    story = Story()
    story.reserve(5, 409, short(5, available=4))
    assert story.checks() == {"refusal": 1}


def test_a_rightful_insufficient_stock_passes() -> None:
    story = Story()
    story.reserve(11, 409, short(11))
    assert story.checks() == {}


def test_an_insufficient_stock_that_names_no_short_line_is_caught() -> None:
    story = Story()
    story.reserve(11, 409, problem("insufficient-stock", 409, lines=[]))
    story.reserve(11, 409, short(11, available=11))
    assert story.checks() == {"refusal": 2}


def test_a_line_without_location_is_short_only_if_every_location_was() -> None:
    story = Story()
    body = {"lines": [{"sku": SKU, "quantity": 11}], "ttl_seconds": 30, "reference": "ref-9"}
    answer = problem(
        "insufficient-stock", 409, lines=[{"sku": SKU, "requested": 11, "available": 10}]
    )
    story.add(Kind.RESERVE, "POST", "/v1/reservations", body, 409, answer)
    assert story.checks() == {}
    west = event(1, "stock.set", (0, 0), (20, 0), 1) | {"location": "west"}
    story.final.feed.insert(1, west)
    story.final.skus[SKU] = view(4, level("east", 13), level("west", 20))
    story.final.initial[SKU, "west"] = 20
    assert story.checks() == {"refusal": 1}  # west always had the 11 units


def test_a_commit_refused_must_name_the_status_the_reservation_ended_in() -> None:
    story = Story()
    path = "/v1/reservations/r_1/commit"
    story.add(Kind.COMMIT, "POST", path, None, 409, problem("reservation-not-active", 409))
    story.add(
        Kind.COMMIT,
        "POST",
        path,
        None,
        409,
        problem("reservation-not-active", 409, reservation_status="expired"),
    )
    assert story.checks() == {"refusal": 2}  # it ended committed


def test_a_refused_reservation_that_holds_units_is_caught() -> None:
    story = Story()
    op = story.reserve(11, 409, short(11))
    assert op.body is not None
    story.final.feed.append(
        event(
            5,
            "reservation.created",
            (13, 0),
            (13, 1),
            5,
            reference=op.body["reference"],
            reservation_id="r_9",
        )
    )
    story.final.skus[SKU] = view(5, level("east", 13, 1))
    found = story.checks()
    assert found.get("refusal") == 1
    released = event(6, "reservation.released", (13, 1), (13, 0), 6, reservation_id="r_9")
    story.final.feed.append(released)
    story.final.skus[SKU] = view(6, level("east", 13))
    assert story.checks() == {}


def test_a_key_reused_with_another_body_must_be_refused() -> None:
    story = Story()
    first = story.history.ops[1]
    assert first.body is not None
    body = first.body | {"delta": 6, "reference": "ref-9"}
    reuse = story.add(Kind.KEY_REUSE, "POST", first.path, body, 200, view(5, level("east", 19)))
    reuse.key, reuse.replay_of = first.key, first.op_id
    assert story.checks().get("key-reuse") == 1
    reuse.record(422, problem("idempotency-key-reused", 422), {}, reuse.ended)
    assert story.checks() == {}
    reuse.record(409, problem("insufficient-stock", 409), {}, reuse.ended)
    assert story.checks() == {"refusal": 1}


def test_a_503_problem_without_retry_after_is_caught() -> None:
    story = Story()
    op = story.add(
        Kind.READ, "GET", f"/v1/skus/{SKU}", None, 503, problem("shard-unavailable", 503)
    )
    assert story.checks() == {"headers": 1}
    op.headers = {"Retry-After": "1"}
    assert story.checks() == {}


# -- reservation statuses -------------------------------------------------------------------


def test_a_reservation_pending_after_settling_is_caught() -> None:
    story = Story()
    story.final.holds["r_1"] = story.hold("pending")
    assert story.checks().get("status") == 1


def test_a_committed_reservation_needs_an_acknowledged_commit() -> None:
    story = Story()
    commit = story.history.ops[3]
    commit.record(0, None, {}, commit.ended)
    commit.retries.append(Attempt(9.0, 9.5, 409, problem("reservation-not-active", 409)))
    commit.retries[-1].problem = "reservation-not-active"
    found = story.checks()
    assert found.get("status") == 1  # committed, but the commit was refused
    assert found.get("refusal") == 1  # and its refusal names no status


def test_an_expiry_before_the_deadline_is_caught() -> None:
    story = Story()
    # r_1 expired instead of being committed: its units went back, the commit was refused.
    story.history.ops[3].record(
        409, problem("reservation-not-active", 409, reservation_status="expired"), {}, 3.5
    )
    story.final.holds["r_1"] = story.hold("expired")
    story.final.feed[3] = event(
        4,
        "reservation.expired",
        (15, 2),
        (15, 0),
        4,
        reservation_id="r_1",
        at="2026-12-01T10:00:29.999Z",
    )
    story.final.skus[SKU] = view(4, level("east", 15))
    story.history.ops[4].record(200, view(4, level("east", 15)), {}, 4.5)
    story.final.home_shards = {"r_1": 0}
    assert story.checks() == {"status": 1}
    story.final.feed[3]["at"] = "2026-12-01T10:00:30.000Z"
    assert story.checks() == {}
    story.final.home_shards = {"r_1": 1}  # the event is not the home's
    assert story.checks() == {"status": 1}


def test_a_level_whose_first_event_does_not_start_from_zero_is_caught() -> None:
    story = Story()
    for item in story.final.feed:
        item["before"]["on_hand"] += 1
        item["after"]["on_hand"] += 1
    story.final.skus[SKU] = view(4, level("east", 14))
    story.final.initial = {(SKU, "east"): 11}
    story.history.ops[0].record(200, view(1, level("east", 11)), {}, 0.5)
    story.history.ops[1].record(200, view(2, level("east", 16)), {}, 1.5)
    story.history.ops[4].record(200, view(4, level("east", 14)), {}, 4.5)
    assert story.checks() == {"feed": 1}


# -- restock files refused whole, cursors ----------------------------------------------------


def test_a_restock_file_expected_refused_must_change_nothing() -> None:
    story = Story()
    refused = {
        "job_id": "late",
        "expect": "refused",
        "what": "a file that breaks late",
        "exit_code": 1,
        "status": "failed",
        "rows_applied": 0,
        "rows_kept": 0,
        "added": {},
    }
    story.final.restock_jobs = [refused]
    assert story.checks() == {}
    story.final.restock_jobs = [refused | {"exit_code": 0}]
    assert story.checks() == {"restock": 1}
    story.final.restock_jobs = [refused | {"rows_applied": 1}]
    assert story.checks() == {"restock": 1}


def test_a_page_read_from_an_old_cursor_must_continue_where_the_cursor_was() -> None:
    story = Story()
    ids = [(0, e["lsn"], e["type"], SKU, "east", e["version"]) for e in story.final.feed]
    read = {"taken_at": 1.0, "read_at": 2.0, "counts": {0: 2}, "problem": None}
    story.final.cursor_reads = [read | {"status": 200, "events": ids[2:]}]
    assert story.checks() == {}
    story.final.cursor_reads = [read | {"status": 200, "events": ids[3:]}]  # a gap
    assert story.checks() == {"cursor": 1}
    story.final.cursor_reads = [read | {"status": 200, "events": ids[1:]}]  # a repeat
    assert story.checks() == {"cursor": 1}
    expired = read | {"status": 410, "problem": "cursor-expired", "events": []}
    story.final.cursor_reads = [expired]
    assert story.checks() == {}
    story.final.feed_broken = "the follower's own cursor was refused"
    assert story.checks() == {"cursor": 1}


def test_a_history_with_retries_survives_its_json_lines() -> None:
    story = Story()
    op = story.history.ops[1]
    op.retries.append(Attempt(1.6, 1.7, 200, op.answer, {"Idempotent-Replayed": "true"}))
    op.headers = {"Retry-After": "1"}
    again = History.of_lines(story.history.lines())
    assert again == story.history
    assert problem_type(problem("insufficient-stock", 409)) == "insufficient-stock"
    assert problem_type({"type": "about:blank"}) is None
