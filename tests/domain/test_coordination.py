"""Reservations across shards, with several pure ledgers standing in for shards and the test
playing coordinator, messenger and clock. Crashes are steps that never happen."""

from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_actors.domain import (
    AbortReservation,
    ActivateReservation,
    AdjustStock,
    CommitHold,
    DomainError,
    Event,
    ExpireHolds,
    ExtendHold,
    HoldExists,
    HoldLine,
    HoldNotActive,
    HoldStatus,
    HoldView,
    InsufficientStock,
    InvalidCommand,
    Ledger,
    LineRequest,
    MarkSettled,
    OpenReservation,
    PrepareHold,
    PruneHolds,
    ReleaseHold,
    SettleHold,
)
from inventory_actors.domain.commands import Command

LEASE_MS = 10_000
TTL_MS = 60_000
HOME = 0


class Cluster:
    """Ledgers by shard id, one clock, and every event each ledger emitted (its log)."""

    def __init__(self, shard_count: int = 3, on_hand: int = 10) -> None:
        self.ledgers = [Ledger() for _ in range(shard_count)]
        self.logs: list[list[tuple[int, Event]]] = [[] for _ in range(shard_count)]
        self.now_ms = 1_000_000
        for shard in range(shard_count):
            self.run(shard, AdjustStock(f"S{shard}", "wh", on_hand, "received"))

    def run(self, shard: int, command: Command) -> Any:
        result, events = self.ledgers[shard].execute(command, self.now_ms)
        self.logs[shard].extend((self.now_ms, event) for event in events)
        return result

    def attempt(self, shard: int, command: Command) -> Any:
        try:
            return self.run(shard, command)
        except DomainError as error:
            return error

    def tick(self, ms: int) -> None:
        self.now_ms += ms
        for shard in range(len(self.ledgers)):
            self.run(shard, ExpireHolds(10_000))

    def push(self) -> int:
        """Deliver every unsettled decision, as the home shard's pusher does."""
        delivered = 0
        for home, ledger in enumerate(self.ledgers):
            for rid, reservation in list(ledger.unsettled.items()):
                for shard in reservation.unsettled:
                    self.run(shard, SettleHold(rid, reservation.status.value))
                    self.run(home, MarkSettled(rid, shard))
                    delivered += 1
        return delivered

    def level(self, shard: int) -> tuple[int, int]:
        level = self.ledgers[shard].skus[f"S{shard}"].levels["wh"]
        return level.on_hand, level.reserved

    def check(self) -> None:
        for ledger in self.ledgers:
            ledger.check_invariants()

    def check_settled(self) -> None:
        """Every finished reservation's parts agree with it once all pushes are done."""
        self.check()
        for home, ledger in enumerate(self.ledgers):
            assert not ledger.unsettled
            for rid, reservation in ledger.reservations.items():
                for shard in reservation.shards:
                    part = self.ledgers[shard].holds.get(rid)
                    if part is None and shard == home:
                        continue  # a home without lines of its own
                    if reservation.status in (HoldStatus.PENDING, HoldStatus.ACTIVE):
                        assert part is None or part.status is HoldStatus.ACTIVE
                    else:
                        assert part is not None, (rid, shard)
                        assert part.status is reservation.status, (rid, shard)

    def replayed_fingerprints_match(self) -> None:
        for shard, ledger in enumerate(self.ledgers):
            copy = Ledger()
            for at_ms, event in self.logs[shard]:
                copy.apply(event, at_ms)
            copy.rebuild_indexes()
            assert copy.fingerprint() == ledger.fingerprint()
            copy.check_invariants()


def lines_for(shard: int, quantity: int = 1) -> tuple[LineRequest, ...]:
    return (LineRequest(f"S{shard}", quantity),)


def place(
    cluster: Cluster,
    rid: str,
    quantities: dict[int, int],
    *,
    stop_after: str | None = None,
) -> Any:
    """The coordinator's steps; `stop_after` names the step after which it crashes."""
    shards = tuple(sorted(quantities))
    opened = cluster.attempt(
        HOME,
        OpenReservation(
            rid,
            HOME,
            shards,
            lines_for(HOME, quantities[HOME]) if HOME in quantities else (),
            TTL_MS,
            LEASE_MS,
            None,
        ),
    )
    if isinstance(opened, DomainError) or stop_after == "open":
        return opened
    lease_until_ms = cluster.ledgers[HOME].reservations[rid].lease_until_ms
    held: list[HoldLine] = []
    failure: DomainError | None = None
    for shard in shards:
        if shard == HOME:
            continue
        answer = cluster.attempt(
            shard, PrepareHold(rid, lines_for(shard, quantities[shard]), lease_until_ms)
        )
        if isinstance(answer, DomainError):
            failure = answer
        else:
            held.extend(answer.lines)
        if stop_after == f"prepare-{shard}":
            return answer
    if failure is not None:
        cluster.run(HOME, AbortReservation(rid))
        return failure
    return cluster.attempt(HOME, ActivateReservation(rid, tuple(held)))


def test_a_cart_across_three_shards_is_held_committed_and_settled_everywhere() -> None:
    cluster = Cluster()
    view = place(cluster, "r_1", {0: 2, 1: 3, 2: 1})
    assert isinstance(view, HoldView) and view.status is HoldStatus.ACTIVE
    assert {(line.sku, line.quantity) for line in view.lines} == {("S0", 2), ("S1", 3), ("S2", 1)}
    assert view.expires_at_ms == cluster.now_ms + TTL_MS
    assert [cluster.level(s) for s in range(3)] == [(10, 2), (10, 3), (10, 1)]
    committed = cluster.run(HOME, CommitHold("r_1"))
    assert committed.status is HoldStatus.COMMITTED
    # The home's own part is committed in the same step as the decision.
    assert cluster.level(0) == (8, 0)
    assert cluster.ledgers[HOME].unsettled["r_1"].unsettled == (1, 2)
    assert cluster.push() == 2
    assert [cluster.level(s) for s in range(3)] == [(8, 0), (7, 0), (9, 0)]
    cluster.check_settled()
    cluster.replayed_fingerprints_match()
    # A repeat changes nothing; a release after a commit is refused.
    assert cluster.run(HOME, CommitHold("r_1")).status is HoldStatus.COMMITTED
    with pytest.raises(HoldNotActive):
        cluster.run(HOME, ReleaseHold("r_1"))


def test_one_short_participant_releases_every_other_part() -> None:
    cluster = Cluster(on_hand=2)
    answer = place(cluster, "r_2", {0: 1, 1: 1, 2: 5})
    assert isinstance(answer, InsufficientStock)
    assert answer.shortages[0].sku == "S2" and answer.shortages[0].available == 2
    assert cluster.ledgers[HOME].reservations["r_2"].status is HoldStatus.RELEASED
    assert cluster.level(0) == (2, 0)  # the home part went with the decision
    assert cluster.level(1) == (2, 1)  # still held until told
    cluster.push()
    assert [cluster.level(s) for s in range(3)] == [(2, 0), (2, 0), (2, 0)]
    cluster.check_settled()
    cluster.replayed_fingerprints_match()


def test_a_short_home_opens_nothing() -> None:
    cluster = Cluster(on_hand=1)
    answer = place(cluster, "r_3", {0: 5, 1: 1})
    assert isinstance(answer, InsufficientStock)
    assert "r_3" not in cluster.ledgers[HOME].reservations
    assert cluster.level(0) == (1, 0)


@pytest.mark.parametrize("stop_after", ["open", "prepare-1", "prepare-2"])
def test_a_coordinator_crash_leaves_pending_parts_freed_within_the_lease(stop_after: str) -> None:
    cluster = Cluster()
    place(cluster, "r_4", {0: 1, 1: 1, 2: 1}, stop_after=stop_after)
    view = cluster.ledgers[HOME].hold_view("r_4", cluster.now_ms)
    assert view is not None and view.status is HoldStatus.PENDING
    cluster.tick(LEASE_MS - 1)
    assert cluster.ledgers[HOME].reservations["r_4"].status is HoldStatus.PENDING
    cluster.tick(1)
    assert cluster.ledgers[HOME].reservations["r_4"].status is HoldStatus.RELEASED
    cluster.push()
    assert [cluster.level(s) for s in range(3)] == [(10, 0)] * 3
    cluster.check_settled()
    # A part that arrives after the home gave up is refused: by the lease, or by the empty
    # part its shard kept when told about the release first.
    lease_until_ms = cluster.ledgers[HOME].reservations["r_4"].lease_until_ms
    late = cluster.attempt(2, PrepareHold("r_4", lines_for(2), lease_until_ms))
    assert isinstance(late, HoldExists | HoldNotActive)
    assert cluster.level(2) == (10, 0)
    cluster.replayed_fingerprints_match()


def test_a_release_told_before_the_part_arrives_blocks_the_part() -> None:
    cluster = Cluster()
    cluster.run(HOME, OpenReservation("r_5", HOME, (0, 1), (), TTL_MS, LEASE_MS))
    cluster.run(HOME, AbortReservation("r_5"))
    cluster.push()  # shard 1 hears of the release before the prepare reaches it
    lease_until_ms = cluster.ledgers[HOME].reservations["r_5"].lease_until_ms
    late = cluster.attempt(1, PrepareHold("r_5", lines_for(1), lease_until_ms))
    assert isinstance(late, HoldExists)
    assert cluster.level(1) == (10, 0)
    cluster.check_settled()


def test_a_lapsed_attempt_told_released_frees_its_units_for_the_next_attempt() -> None:
    """A keyed cart's next attempt: the coordinator tells the participant that the lapsed
    attempt was released (the home has decided so), then prepares the next part on the units
    the lapsed one held; the home's own delivery of that decision, later, is a repeat."""
    cluster = Cluster(on_hand=2)
    place(cluster, "r_a1", {0: 2, 1: 2}, stop_after="prepare-1")
    cluster.now_ms += LEASE_MS
    with pytest.raises(HoldNotActive):
        cluster.run(HOME, ActivateReservation("r_a1", (HoldLine("S1", "wh", 2),)))
    assert cluster.run(HOME, AbortReservation("r_a1")).status is HoldStatus.RELEASED
    assert cluster.level(0) == (2, 0) and cluster.level(1) == (2, 2)
    assert cluster.run(1, SettleHold("r_a1", "released")).status is HoldStatus.RELEASED
    view = place(cluster, "r_a2", {0: 2, 1: 2})
    assert isinstance(view, HoldView) and view.status is HoldStatus.ACTIVE
    assert cluster.push() == 1  # the home's own delivery of the release: a repeat
    assert [cluster.level(s) for s in (0, 1)] == [(2, 2), (2, 2)]
    cluster.check()
    cluster.replayed_fingerprints_match()


def test_expiry_is_decided_by_the_home_and_wins_over_a_late_commit() -> None:
    cluster = Cluster()
    place(cluster, "r_6", {0: 1, 1: 1})
    cluster.tick(TTL_MS)
    # Past its expiry the reservation is expired for everyone, even before any push.
    with pytest.raises(HoldNotActive) as refused:
        cluster.run(HOME, CommitHold("r_6"))
    assert refused.value.status == "expired"
    assert cluster.ledgers[HOME].reservations["r_6"].status is HoldStatus.EXPIRED
    # The participant never expires its part on its own, however long it waits...
    cluster.ledgers[1].execute(ExpireHolds(100), cluster.now_ms + 10 * TTL_MS)
    assert cluster.level(1) == (10, 1)
    cluster.push()  # ...only the home's decision frees it
    assert cluster.level(1) == (10, 0)
    cluster.check_settled()


def test_a_commit_just_before_expiry_holds_and_the_timer_changes_nothing() -> None:
    cluster = Cluster()
    place(cluster, "r_7", {0: 1, 2: 2})
    cluster.tick(TTL_MS - 1)
    assert cluster.run(HOME, CommitHold("r_7")).status is HoldStatus.COMMITTED
    cluster.tick(10 * TTL_MS)
    cluster.push()
    assert cluster.level(0) == (9, 0) and cluster.level(2) == (8, 0)
    cluster.check_settled()


def test_release_then_commit_is_refused_and_stock_counts_once() -> None:
    cluster = Cluster()
    place(cluster, "r_8", {0: 1, 1: 1})
    cluster.run(HOME, ReleaseHold("r_8"))
    with pytest.raises(HoldNotActive):
        cluster.run(HOME, CommitHold("r_8"))
    assert cluster.run(HOME, ReleaseHold("r_8")).status is HoldStatus.RELEASED
    cluster.push()
    assert cluster.level(0) == (10, 0) and cluster.level(1) == (10, 0)
    cluster.check_settled()


def test_extend_moves_the_home_deadline_only_while_active() -> None:
    cluster = Cluster()
    place(cluster, "r_9", {0: 1, 1: 1})
    cluster.tick(TTL_MS - 1_000)
    extended = cluster.run(HOME, ExtendHold("r_9", TTL_MS))
    assert extended.expires_at_ms == cluster.now_ms + TTL_MS
    cluster.tick(TTL_MS - 1)
    assert cluster.ledgers[HOME].reservations["r_9"].status is HoldStatus.ACTIVE
    cluster.tick(1)
    assert cluster.ledgers[HOME].reservations["r_9"].status is HoldStatus.EXPIRED
    with pytest.raises(HoldNotActive):
        cluster.run(HOME, ExtendHold("r_9", TTL_MS))


def test_parts_cannot_be_ended_directly_on_a_participant() -> None:
    cluster = Cluster()
    place(cluster, "r_10", {0: 1, 1: 1})
    for command in (CommitHold("r_10"), ReleaseHold("r_10"), ExtendHold("r_10", TTL_MS)):
        with pytest.raises(InvalidCommand):
            cluster.run(1, command)


def test_an_activation_after_the_lease_is_refused() -> None:
    cluster = Cluster()
    place(cluster, "r_11", {0: 1, 1: 1}, stop_after="prepare-1")
    cluster.now_ms += LEASE_MS
    with pytest.raises(HoldNotActive):
        cluster.run(HOME, ActivateReservation("r_11", (HoldLine("S1", "wh", 1),)))


def test_finished_reservations_are_pruned_only_once_settled() -> None:
    cluster = Cluster()
    place(cluster, "r_12", {0: 1, 1: 1})
    cluster.run(HOME, ReleaseHold("r_12"))
    cluster.now_ms += 1_000
    cluster.run(HOME, PruneHolds(cluster.now_ms, 100))
    assert "r_12" in cluster.ledgers[HOME].reservations  # shard 1 has not heard yet
    cluster.push()
    cluster.now_ms += 1_000
    cluster.run(HOME, PruneHolds(cluster.now_ms, 100))
    assert "r_12" not in cluster.ledgers[HOME].reservations
    assert "r_12" not in cluster.ledgers[HOME].holds
    cluster.check()
    cluster.replayed_fingerprints_match()


Step = tuple[str, int, int]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["place", "crash", "commit", "release", "extend", "tick", "push"]),
            st.integers(0, 7),
            st.integers(1, 4),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_random_carts_with_crashes_never_break_a_rule_and_settle_consistently(
    steps: Sequence[Step],
) -> None:
    cluster = Cluster(on_hand=6)
    placed: list[str] = []
    for index, (action, pick, amount) in enumerate(steps):
        rid = f"r_{index}"
        quantities = {shard: amount for shard in range(3) if (pick >> shard) & 1 or shard == 0}
        if action == "place" and len(quantities) > 1:
            place(cluster, rid, quantities)
            placed.append(rid)
        elif action == "crash" and len(quantities) > 1:
            place(cluster, rid, quantities, stop_after=f"prepare-{max(quantities)}")
            placed.append(rid)
        elif action in ("commit", "release", "extend") and placed:
            target = placed[pick % len(placed)]
            commands: dict[str, Command] = {
                "commit": CommitHold(target),
                "release": ReleaseHold(target),
                "extend": ExtendHold(target, TTL_MS),
            }
            cluster.attempt(HOME, commands[action])
        elif action == "tick":
            cluster.tick(amount * 7_000)
        elif action == "push":
            cluster.push()
        cluster.check()
    cluster.tick(LEASE_MS + 2 * TTL_MS)
    cluster.push()
    cluster.check_settled()
    for shard in range(3):
        assert cluster.level(shard)[1] == 0  # nothing is held once everything has ended
    cluster.replayed_fingerprints_match()
