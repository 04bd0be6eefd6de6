"""S7, the suite's spike: ten times the steady rate of reservations, open loop, against a
deployment with rate limits on; nothing acknowledged may be lost."""

import json
import time
import urllib.error
import urllib.request
from typing import Any

from bench.spike import ReservationLoad, SpikeResult, percentile, run_in_child
from bench.stack import ON_HAND, ServeStack, post
from bench.suite_load import Sizes, goal

GOAL_S7_REJECT_MS = 100.0
# An accepted request waits at most the admission gate's queue bound (AdmissionLimits), then
# makes one shard call.
GOAL_S7_ACCEPTED_MS = 2_500.0
# Reading back after the spike: the key may still be over its rate limit; wait as told.
READ_BACK_SECONDS_MAX = 120.0


def spike_scenario(stack: ServeStack, sizes: Sizes) -> dict[str, Any]:
    """S7 on a deployment with rate limits on (the protection a spike meets) and the default
    admission control. The generator runs in a child process at the Ray workers' niceness."""
    from serve_app.middleware.rate_limit import RateLimits, RoleLimit  # noqa: PLC0415

    skus = [f"spike-{i:05d}" for i in range(200)]
    _stock_spike(stack, skus)
    limit = sizes.spike_limit_per_second
    limits = RateLimits(admin=RoleLimit(limit, limit))
    stack.redeploy_with(limits)
    load = ReservationLoad(
        f"{stack.url}/v1/reservations",
        {"Authorization": f"Bearer {stack.key}"},
        skus,
        steady_rps=sizes.spike_steady_rps,
        phase_seconds=sizes.spike_phase_seconds,
    )
    result = run_in_child(load)
    run = spike_run(result, _reserved(stack, skus))
    return {
        "id": "S7",
        "title": f"10x spike: {sizes.spike_steady_rps:,.0f} -> "
        f"{sizes.spike_steady_rps * 10:,.0f} req/s open loop, rate limit {limit}/s",
        "unit": "accepted req/s",
        "runs": [run],
        "goals": spike_goals(run),
        "notes": [f"phases: {json.dumps(result.summary())}"],
    }


def _stock_spike(stack: ServeStack, skus: list[str]) -> None:
    ops = [
        {"op": "adjust", "sku": sku, "location": "L01", "delta": ON_HAND, "reason": "received"}
        for sku in skus
    ]
    status, _ = post(f"{stack.url}/v1/batch", stack.key, {"operations": ops})
    if status != 200:
        raise RuntimeError(f"stocking the spike's SKUs answered {status}")


def spike_run(result: SpikeResult, reserved: int) -> dict[str, Any]:
    """The spike's figures; `reserved` is what the service holds afterwards, so what was
    acknowledged and is not held was lost."""
    accepted = sum(1 for answer in result.answers if answer.status == 201)
    summary = result.summary()
    spike = summary["spike"]
    phases = [summary[phase] for phase in ("steady", "spike", "after")]
    rejected = [answer for answer in result.answers if answer.status in (429, 503)]
    return {
        "target": "ours",
        "round": 1,
        "value": spike["accepted_rps"],
        "offered_rps": spike["offered_rps"],
        "accepted_rps": spike["accepted_rps"],
        "accepted_p99_ms": spike["accepted_p99_ms"],
        "steady_p99_ms": summary["steady"]["accepted_p99_ms"],
        "after_p99_ms": summary["after"]["accepted_p99_ms"],
        "rejected": spike["rejected"],
        "rejected_429": spike["rejected_429"],
        # Every phase's refusals: the late ones of a spike fall in the phase after it.
        "rejected_p99_ms": round(percentile([a.seconds * 1e3 for a in rejected], 99), 1),
        "rejected_without_retry_after": sum(p["rejected_without_retry_after"] for p in phases),
        "rejected_not_problem": sum(p["rejected_not_problem"] for p in phases),
        "other_failures": sum(p["other_failures"] for p in phases),
        "generator_late_p99_ms": summary["generator_late_p99_ms"],
        "acknowledged": accepted,
        "lost": accepted - reserved,
    }


def spike_goals(run: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        goal("S7 no acknowledged change lost", run["lost"], 0, "<=", "see the run"),
        goal(
            "S7 rejections answered within 100 ms (p99)",
            run["rejected_p99_ms"],
            GOAL_S7_REJECT_MS,
            "<=",
            "the load generator shares the 2 cores",
        ),
        goal(
            "S7 every rejection a problem with Retry-After, no other failure",
            run["rejected_without_retry_after"]
            + run["rejected_not_problem"]
            + run["other_failures"],
            0,
            "<=",
            "see the run",
        ),
        goal(
            f"S7 accepted p99 <= {GOAL_S7_ACCEPTED_MS:,.0f} ms during the spike",
            run["accepted_p99_ms"],
            GOAL_S7_ACCEPTED_MS,
            "<=",
            "the load generator shares the 2 cores",
        ),
    ]


def _reserved(stack: ServeStack, skus: list[str]) -> int:
    """Units reserved on `skus` now, read back through the API (with the spike's key, so a
    429 is waited out for its `Retry-After`)."""
    deadline = time.monotonic() + READ_BACK_SECONDS_MAX
    total = 0
    for sku in skus:
        request = urllib.request.Request(
            f"{stack.url}/v1/skus/{sku}", headers={"Authorization": f"Bearer {stack.key}"}
        )
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    total += json.loads(answer.read())["totals"]["reserved"]
                break
            except urllib.error.HTTPError as error:
                if error.code != 429 or time.monotonic() > deadline:
                    raise
                time.sleep(float(error.headers.get("Retry-After", "1")))
    return total
