"""The checker on small hand-made histories: a consistent one passes, and each kind of broken
one is caught by the check meant for it."""

from copy import deepcopy
from typing import Any

import pytest

from chaos.checker import check
from chaos.history import History, Kind, Op
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
    }


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
            "lines": [{"sku": SKU, "location": "east", "quantity": 2}],
        }
        self.add(Kind.RESERVE, "POST", "/v1/reservations", {"lines": []}, 201, hold)
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
        op = Op(op_id, 0, kind, method, path, body, key, float(op_id), op_id + 0.5, status, answer)
        self.history.ops.append(op)
        return op

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
    body = {"location": "east", "delta": 1, "reason": "correction", "reference": "ref-9"}
    op = story.add(Kind.ADJUST, "POST", f"/v1/skus/{SKU}/adjustments", body, 0, None)
    assert story.checks() == {"unresolved": 1}
    op.resolve_attempts, op.resolved_status = 1, 409
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
    assert story.checks().get("replay") == 1
    replay.answer = first.answer
    assert story.checks() == {}


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
                    {"status": "failed", "rows_total": 4, "rows_applied": 0, "added": {}}
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
    job = {"status": "succeeded", "rows_total": 3, "rows_applied": 3, "added": {(SKU, "east"): 3}}
    story.final.restock_jobs = [job]
    assert story.checks() == {"conservation": 1}  # 3 units the state does not have
    story.final.skus[SKU] = view(4, level("east", 16))
    story.final.feed.append(event(5, "stock.adjusted", (13, 0), (16, 0), 4))
    assert story.checks() == {}
    story.final.restock_jobs = [job | {"status": "failed", "rows_applied": 1, "added": None}]
    assert story.checks() == {"conservation": 1, "restock": 1}


def test_a_history_survives_its_json_lines() -> None:
    story = Story()
    again = History.of_lines(story.history.lines())
    assert again == story.history
