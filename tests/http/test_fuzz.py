"""Client input never causes a 5xx, and the app answers what its OpenAPI document says.

Random JSON (shaped like the API's bodies often enough to get past the first check) posted to
every route, then schemathesis driving every operation from `/openapi.json`."""

import json
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from inventory_actors.shard.partitioning import new_hold_id
from tests.http.conftest import PROBLEM, HttpApp, bearer, stock

pytestmark = pytest.mark.ray

FIELDS = [
    "lines",
    "sku",
    "quantity",
    "location",
    "delta",
    "reason",
    "reference",
    "on_hand",
    "from_location",
    "to_location",
    "ttl_seconds",
    "skus",
    "operations",
    "op",
    "reservation_id",
    "idempotency_key",
]
WORDS = [
    "",
    "berlin",
    "paris",
    "A-1",
    "received",
    "cycle_count",
    "reserve",
    "commit",
    "release",
    "adjust",
    "set",
    "r_000aaaaaaaaaaaaaaaaaaaa",
    "x" * 129,
]
NUMBERS = [0, 1, -1, 900, 86_400, 86_401, 10**9, 10**9 + 1, 10**12, 10**12 + 1, 2**63, -(2**63)]

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from(NUMBERS)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(WORDS)
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=16,
)
shaped = st.dictionaries(st.sampled_from(FIELDS), values, max_size=6)
lines = st.lists(
    st.fixed_dictionaries(
        {"sku": st.sampled_from(["A-1", "B-2"]) | values, "quantity": st.sampled_from(NUMBERS)},
        optional={"location": st.sampled_from(WORDS) | values},
    ),
    max_size=3,
)
bodies = (
    values
    | shaped
    | st.fixed_dictionaries({"lines": lines}, optional={"ttl_seconds": values})
    | st.fixed_dictionaries(
        {
            "operations": st.lists(
                st.fixed_dictionaries(
                    {"op": st.sampled_from(["reserve", "commit", "release", "adjust", "set"])}
                ).flatmap(lambda op: shaped.map(lambda rest: {**rest, **op})),
                max_size=4,
            )
        }
    )
)
ids = st.sampled_from(["A-1", "a/b", new_hold_id(1), "%", ".."]) | st.text(max_size=20)
headers = st.fixed_dictionaries(
    {},
    optional={
        # HTTP itself cannot carry a value with spaces at either end.
        "Idempotency-Key": st.text(
            st.characters(min_codepoint=32, max_codepoint=126), max_size=8
        ).map(str.strip),
        "If-Match": st.sampled_from(['"1"', "*", 'W/"2"', '"x"', ""]),
    },
)
ROUTES = [
    ("POST", "/v1/skus:query"),
    ("POST", "/v1/skus/{}/adjustments"),
    ("PUT", "/v1/skus/{}/locations/{}"),
    ("POST", "/v1/skus/{}/transfers"),
    ("POST", "/v1/reservations"),
    ("POST", "/v1/reservations/{}/commit"),
    ("POST", "/v1/reservations/{}/release"),
    ("POST", "/v1/reservations/{}/extend"),
    ("POST", "/v1/batch"),
]


def test_random_json_never_gets_a_5xx(http_app: HttpApp, http: httpx.Client) -> None:
    for sku in ("A-1", "B-2"):
        stock(http, http_app, sku, 1_000)

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        route=st.sampled_from(ROUTES),
        path_ids=st.lists(ids, min_size=2, max_size=2),
        body=bodies,
        extra=headers,
    )
    def post(route: tuple[str, str], path_ids: list[str], body: Any, extra: dict[str, str]) -> None:
        method, template = route
        path = template.format(*(quote(part, safe="") for part in path_ids))
        # Python's encoder writes NaN and Infinity, which are not JSON: the app must say 400.
        answer = http.request(
            method,
            path,
            content=json.dumps(body).encode(),
            headers={**bearer(http_app.admin_key), "Content-Type": "application/json", **extra},
        )
        assert answer.status_code < 500, (method, path, body, answer.status_code, answer.text)
        if answer.status_code >= 400:
            assert answer.headers["content-type"].split(";")[0] == PROBLEM, answer.headers
            assert answer.json()["status"] == answer.status_code

    post()


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _schemathesis(app: HttpApp, max_examples: int, seconds_max: float) -> None:
    # The event stream never ends by itself (an answer schemathesis cannot read to its end);
    # tests/http/test_feed.py reads it.
    schema = schemathesis.openapi.from_url(f"{app.base_url}/openapi.json").exclude(
        path="/v1/events/stream"
    )
    strategy = schema.as_strategy(GenerationMode.POSITIVE) | schema.as_strategy(
        GenerationMode.NEGATIVE
    )
    started = time.monotonic()

    @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case: Case[Any]) -> None:
        response = case.call(base_url=app.base_url, headers=bearer(app.admin_key), timeout=30)
        case.validate_response(response, checks=CHECKS)

    check()
    assert time.monotonic() - started < seconds_max


def test_schemathesis_finds_no_5xx_and_no_schema_violation(http_app: HttpApp) -> None:
    _schemathesis(http_app, max_examples=150, seconds_max=60)


@pytest.mark.slow
def test_schemathesis_long_run(http_app: HttpApp) -> None:
    _schemathesis(http_app, max_examples=3_000, seconds_max=1_800)
