"""Token buckets per key: refill, burst, header values, refusals, costs and the bucket bound."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serve_app.keys import Role
from serve_app.middleware.rate_limit import RateLimiter, RateLimits, Refusal, RoleLimit
from serve_app.models import BATCH_OPERATIONS_MAX

SMALL = RoleLimit(per_second=2.0, burst=10)


def limiter(role_limit: RoleLimit = SMALL, buckets_max: int = 100) -> RateLimiter:
    return RateLimiter(
        RateLimits(reader=role_limit, writer=role_limit, admin=role_limit, buckets_max=buckets_max)
    )


def test_defaults_give_readers_the_higher_rate_and_writers_a_burst_for_the_largest_batch() -> None:
    limits = RateLimits()
    assert limits.for_role(Role.READER) == RoleLimit(2_000.0, 4_000)
    # A batch costs one token per operation: a full bucket pays for the largest one allowed.
    assert limits.for_role(Role.WRITER) == RoleLimit(1_000.0, BATCH_OPERATIONS_MAX)
    assert limits.for_role(Role.ADMIN) == RoleLimit(1_000.0, BATCH_OPERATIONS_MAX)


def test_a_new_key_starts_with_a_full_bucket() -> None:
    decision = limiter().take("k", Role.READER, now_s=0.0)
    assert decision.allowed
    assert (decision.limit, decision.remaining, decision.reset_seconds) == (10, 9, 1)


def test_headers_match_the_decision() -> None:
    decision = limiter().take("k", Role.READER, now_s=0.0, cost=5)
    assert decision.headers() == {
        "RateLimit-Limit": "10",
        "RateLimit-Remaining": "5",
        "RateLimit-Reset": "3",  # 5 missing tokens at 2/s: 2.5 s, rounded up
    }


def test_the_burst_is_served_at_once_then_refused_with_retry_after() -> None:
    buckets = limiter()
    for expected_remaining in range(9, -1, -1):
        decision = buckets.take("k", Role.WRITER, now_s=0.0)
        assert decision.allowed and decision.remaining == expected_remaining
    refused = buckets.take("k", Role.WRITER, now_s=0.0)
    assert not refused.allowed
    assert refused.refusal is Refusal.RATE_LIMITED
    assert refused.retry_after_seconds == 1  # one token at 2/s: 0.5 s, rounded up
    assert refused.remaining == 0 and refused.reset_seconds == 5
    assert refused.headers()["Retry-After"] == "1"


def test_a_refusal_takes_no_tokens() -> None:
    buckets = limiter()
    buckets.take("k", Role.READER, now_s=0.0, cost=8)
    assert not buckets.take("k", Role.READER, now_s=0.0, cost=3).allowed
    assert buckets.take("k", Role.READER, now_s=0.0, cost=2).remaining == 0


def test_tokens_refill_at_the_rate_up_to_the_burst() -> None:
    buckets = limiter()
    buckets.take("k", Role.READER, now_s=0.0, cost=10)
    assert buckets.take("k", Role.READER, now_s=1.0).remaining == 1  # 2 back, 1 taken
    assert buckets.take("k", Role.READER, now_s=1_000.0).remaining == 9  # capped at burst


def test_retry_after_is_the_wait_for_the_whole_cost() -> None:
    buckets = limiter(RoleLimit(per_second=0.5, burst=4))
    buckets.take("k", Role.READER, now_s=0.0, cost=4)
    refused = buckets.take("k", Role.READER, now_s=0.0, cost=3)
    assert refused.retry_after_seconds == 6
    assert not buckets.take("k", Role.READER, now_s=5.9, cost=3).allowed
    assert buckets.take("k", Role.READER, now_s=6.0, cost=3).allowed


def test_a_batch_costs_one_token_per_operation() -> None:
    decision = limiter().take("k", Role.WRITER, now_s=0.0, cost=7)
    assert decision.allowed and decision.remaining == 3


def test_a_batch_takes_the_rest_of_its_cost_once_counted_or_no_more() -> None:
    """One token on arrival, before the body is read; the rest once the operations are counted.
    A refusal takes no more; Retry-After is the wait for the whole cost, what a retry takes."""
    buckets = limiter(RoleLimit(per_second=0.5, burst=10))
    assert buckets.take("k", Role.WRITER, now_s=0.0).remaining == 9
    assert buckets.take_rest("k", Role.WRITER, now_s=0.0, cost=7).remaining == 3
    assert buckets.take("k", Role.WRITER, now_s=0.0).remaining == 2  # the next batch arrives
    refused = buckets.take_rest("k", Role.WRITER, now_s=0.0, cost=4)
    assert not refused.allowed and refused.refusal is Refusal.RATE_LIMITED
    assert (refused.remaining, refused.retry_after_seconds) == (2, 4)  # 2 more tokens at 0.5/s
    assert buckets.take_rest("k", Role.WRITER, now_s=0.0, cost=1).remaining == 2  # paid already
    above = buckets.take_rest("k", Role.WRITER, now_s=0.0, cost=11)
    assert above.refusal is Refusal.COST_ABOVE_BURST and above.remaining == 2
    assert RateLimiter(RateLimits.disabled()).take_rest("k", Role.WRITER, 0.0, cost=50).allowed


def test_a_cost_above_the_burst_is_refused_even_with_a_full_bucket() -> None:
    buckets = limiter()
    refused = buckets.take("k", Role.WRITER, now_s=0.0, cost=11)
    assert not refused.allowed
    assert refused.refusal is Refusal.COST_ABOVE_BURST
    assert "at most 10" in refused.detail and "split" in refused.detail
    assert refused.retry_after_seconds >= 1
    assert buckets.take("k", Role.WRITER, now_s=0.0, cost=10).allowed


def test_a_cost_below_one_is_a_bug() -> None:
    with pytest.raises(ValueError, match="cost"):
        limiter().take("k", Role.READER, now_s=0.0, cost=0)


def test_keys_have_separate_buckets_sized_by_role() -> None:
    buckets = RateLimiter(
        RateLimits(reader=RoleLimit(1.0, 3), writer=RoleLimit(1.0, 2), admin=RoleLimit(1.0, 1))
    )
    assert buckets.take("r", Role.READER, now_s=0.0).limit == 3
    assert buckets.take("w", Role.WRITER, now_s=0.0).limit == 2
    assert buckets.take("a", Role.ADMIN, now_s=0.0).limit == 1
    assert not buckets.take("a", Role.ADMIN, now_s=0.0).allowed
    assert buckets.take("w", Role.WRITER, now_s=0.0).allowed


def test_a_clock_stepping_back_does_not_drain_or_refill() -> None:
    buckets = limiter()
    buckets.take("k", Role.READER, now_s=10.0, cost=5)
    assert buckets.take("k", Role.READER, now_s=9.0).remaining == 4
    assert buckets.take("k", Role.READER, now_s=10.5).remaining == 4  # +1 token from 10.0


def test_buckets_are_bounded_and_the_least_recently_used_goes_first() -> None:
    buckets = limiter(buckets_max=2)
    buckets.take("a", Role.READER, now_s=0.0, cost=10)
    buckets.take("b", Role.READER, now_s=0.0, cost=10)
    buckets.take("a", Role.READER, now_s=0.0, cost=1)  # refused, but "a" was used last
    buckets.take("c", Role.READER, now_s=0.0)
    assert len(buckets) == 2
    assert not buckets.take("a", Role.READER, now_s=0.0).allowed  # kept: still empty
    assert buckets.take("b", Role.READER, now_s=0.0).remaining == 9  # dropped: starts full


def test_disabled_limits_allow_everything_and_send_no_headers() -> None:
    buckets = RateLimiter(RateLimits.disabled())
    for _ in range(100):
        decision = buckets.take("k", Role.READER, now_s=0.0, cost=1_000_000)
        assert decision.allowed and not decision.enforced
    assert decision.headers() == {}
    assert len(buckets) == 0


def test_per_replica_limits_divide_the_cluster_limit() -> None:
    shared = RateLimits(reader=RoleLimit(3_000.0, 4_000)).per_replica(3)
    assert shared.reader == RoleLimit(1_000.0, 1_334)
    assert shared.writer == RoleLimit(1_000.0 / 3, 3_334)
    with pytest.raises(ValueError, match="replicas"):
        RateLimits().per_replica(0)


@pytest.mark.parametrize(
    ("per_second", "burst"), [(0.0, 1), (-1.0, 1), (math.inf, 1), (math.nan, 1), (1.0, 0)]
)
def test_invalid_limits_are_refused(per_second: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        RoleLimit(per_second, burst)


steps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=3.0), st.integers(min_value=1, max_value=12)),
    max_size=60,
)


@given(steps)
def test_served_cost_never_exceeds_burst_plus_refill(events: list[tuple[float, int]]) -> None:
    buckets = limiter()
    now_s, served = 0.0, 0
    for gap_s, cost in events:
        now_s += gap_s
        decision = buckets.take("k", Role.READER, now_s, cost)
        assert 0 <= decision.remaining <= SMALL.burst
        assert 0 <= decision.reset_seconds <= math.ceil(SMALL.burst / SMALL.per_second)
        if decision.allowed:
            served += cost
        else:
            assert decision.retry_after_seconds >= 1
        assert served <= SMALL.burst + now_s * SMALL.per_second + 1e-6


@given(steps, st.integers(min_value=1, max_value=10))
def test_waiting_retry_after_is_enough(events: list[tuple[float, int]], cost: int) -> None:
    buckets = limiter()
    now_s = 0.0
    for gap_s, spent in events:
        now_s += gap_s
        buckets.take("k", Role.READER, now_s, spent)
    refused = buckets.take("k", Role.READER, now_s, cost)
    if not refused.allowed:
        assert buckets.take("k", Role.READER, now_s + refused.retry_after_seconds, cost).allowed
