"""Bad input gets a 4xx problem answer, the app stays up, and nothing changes.

Malformed JSON, wrong types, bodies over the size limit or nested 100,000 deep, overlong and odd
ids and headers, on every mutating route; then slow clients on raw sockets. Each answer is a 4xx
`application/problem+json` (but for the few requests the ingress refuses before the app sees
them), and after each case the target SKU (version, on_hand, reserved), its reservation,
threshold and the webhooks read as before, and the change feed has nothing new past the cursor
read before. After each batch of cases, /healthz answers and a valid mutation still works."""

import functools
import json
import select
import socket
import threading
import time
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from pydantic import BaseModel

from inventory_actors.cluster.boundary import (
    AdjustmentBody,
    CountBody,
    ExtendBody,
    ReservationBody,
    ThresholdBody,
    TransferBody,
)
from inventory_actors.domain import limits
from serve_app.models import BATCH_OPERATIONS_MAX, QUERY_SKUS_MAX, BatchBody, QueryBody
from serve_app.routes.webhooks import WebhookBody
from serve_app.service import Settings
from tests.http.conftest import PROBLEM, HttpApp, assert_problem, bearer, stock

pytestmark = pytest.mark.ray

# tests/http/conftest.py sets none of the body bounds, so the session's app has the defaults.
SETTINGS = Settings()
KIB = 1024
ID_LENGTH_MAX = 128  # the contract's, as limits.ID_PATTERN has it
NESTING_LEVELS = 100_000
# A refusal of a huge or deep body takes milliseconds; it must never take longer than this.
REFUSAL_SECONDS_MAX = 5.0
# While a client stalls, other requests must still be answered within this.
SERVED_QUICKLY_SECONDS = 2.0
# A stalled body is answered `body_read_timeout_seconds` after its last byte; this much more is
# allowed for the answer to come through the ingress.
STALL_ANSWER_MARGIN_SECONDS = 5.0
DRIBBLE_INTERVAL_SECONDS = 0.01
TARGET_HOLD_TTL_SECONDS = 3_600
FEED_PAGE = 10_000
# Cases of a test in flight at once.
CASES_AT_ONCE = 8
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
BOM = b"\xef\xbb\xbf"
# Where a route's body template takes the value a case puts there (JSON text).
VALUE = "<value>"
MARK = json.dumps(VALUE)
SLUG_OF_STATUS = {
    400: "validation-error",
    401: "unauthorized",
    404: "not-found",
    405: "method-not-allowed",
    408: "request-timeout",
    412: "version-conflict",
    413: "payload-too-large",
    422: "validation-error",
}
# Feed events no request causes: other test modules' reservations expiring during the session.
BACKGROUND_EVENT_TYPES = frozenset({"reservation.expired", "stock.low", "stock.recovered"})


@dataclass(frozen=True)
class Target:
    """What the bad input aims at."""

    sku: str  # stocked at berlin and paris, with a threshold at berlin
    hold_id: str  # an active reservation of `sku`
    spare_sku: str  # stock for the valid reservations made while a client stalls

    def view_path(self, view: str) -> str:
        return {
            "sku": f"/v1/skus/{self.sku}",
            "hold": f"/v1/reservations/{self.hold_id}",
            "threshold": f"/v1/skus/{self.sku}/locations/berlin/threshold",
            "webhooks": "/v1/webhooks",
        }[view]


@pytest.fixture(scope="module")
def target(http_app: HttpApp) -> Iterator[Target]:
    with httpx.Client(base_url=http_app.base_url, timeout=30.0) as http:
        sku, spare_sku = http_app.sku(prefix="BAD"), http_app.sku(prefix="BAD")
        stock(http, http_app, sku, 100, "berlin")
        stock(http, http_app, sku, 50, "paris")
        stock(http, http_app, spare_sku, 1_000, "berlin")
        auth = bearer(http_app.admin_key)
        threshold = http.put(
            f"/v1/skus/{sku}/locations/berlin/threshold",
            json={"low_stock_below": 5},
            headers=auth,
        )
        assert threshold.status_code == 200, threshold.text
        hold = http.post(
            "/v1/reservations",
            json={
                "lines": [{"sku": sku, "quantity": 2, "location": "berlin"}],
                "ttl_seconds": TARGET_HOLD_TTL_SECONDS,
            },
            headers=auth,
        )
        assert hold.status_code == 201, hold.text
        hold_id = hold.json()["reservation_id"]
        yield Target(sku, hold_id, spare_sku)
        http.post(f"/v1/reservations/{hold_id}/release", headers=auth)


@pytest.fixture(scope="module")
def pool() -> Iterator[ThreadPoolExecutor]:
    """Sends a test's cases a few at a time: hundreds of cases, each with its own check."""
    with ThreadPoolExecutor(max_workers=CASES_AT_ONCE) as executor:
        yield executor


class Unchanged:
    """The target's views and the change feed's position, read when made; `check` reads them
    again and asserts that nothing has changed."""

    def __init__(
        self, http: httpx.Client, app: HttpApp, target: Target, views: Collection[str] = ()
    ) -> None:
        self.http, self.target = http, target
        self.auth = bearer(app.admin_key)
        self.paths = [target.view_path(view) for view in ("sku", *views)]
        self.cursor = self._feed_end()
        self.before = [self._get(path) for path in self.paths]

    def _get(self, path: str) -> Any:
        answer = self.http.get(path, headers=self.auth)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        return answer.json()

    def _feed_end(self) -> str:
        cursor = ""
        while True:
            page = self._get(f"/v1/events?cursor={cursor}&limit={FEED_PAGE}")
            cursor = page["cursor"]
            if len(page["events"]) < FEED_PAGE:
                return str(cursor)

    def _caused(self, event: dict[str, Any]) -> bool:
        """Whether bad input could have caused `event`: not so for background events of
        other SKUs, nor for the spare SKU's valid reservations made while clients stall."""
        sku = event.get("sku")
        if sku == self.target.sku:
            return True
        return sku != self.target.spare_sku and event["type"] not in BACKGROUND_EVENT_TYPES

    def check(self, case: str) -> None:
        page = self._get(f"/v1/events?cursor={self.cursor}&limit={FEED_PAGE}")
        new = [event for event in page["events"] if self._caused(event)]
        assert new == [], (case, "the change feed moved", new)
        if not page["events"]:
            assert page["cursor"] == self.cursor, (case, "the change feed's position moved")
        after = [self._get(path) for path in self.paths]
        assert after == self.before, (case, "a view changed", self.before, after)


def assert_refused(answer: httpx.Response, statuses: Collection[int], case: str) -> None:
    """A 4xx problem answer, with one of `statuses` and the problem type the status has."""
    assert answer.status_code in statuses, (case, answer.status_code, answer.text[:300])
    assert_problem(answer, answer.status_code, SLUG_OF_STATUS[answer.status_code])


def assert_still_serving(http: httpx.Client, app: HttpApp, target: Target) -> None:
    """The app answers /healthz, and a valid adjustment of the target goes through."""
    assert http.get("/healthz").status_code == 200
    auth = bearer(app.admin_key)
    before = http.get(f"/v1/skus/{target.sku}", headers=auth).json()
    answer = http.post(
        f"/v1/skus/{target.sku}/adjustments",
        json={"location": "berlin", "delta": 1, "reason": "received"},
        headers=auth,
    )
    assert answer.status_code == 200, answer.text
    after = answer.json()
    assert after["version"] == before["version"] + 1
    assert after["totals"]["on_hand"] == before["totals"]["on_hand"] + 1


# -- the routes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A mutating route and a valid body for it, but for one value (MARK in `template`)."""

    name: str
    method: str
    path: str
    template: str
    valid_value: str  # JSON text
    wrong_values: tuple[str, ...] = ()  # JSON texts the place of MARK must refuse
    model: type[BaseModel] | None = None  # None: the route takes no body
    views: tuple[str, ...] = ()  # views besides the SKU's it could change

    def body(self, value: str | None = None) -> bytes:
        return self.template.replace(MARK, self.valid_value if value is None else value).encode()

    @property
    def body_bytes_max(self) -> int:
        if self.path == "/v1/batch":
            return SETTINGS.batch_body_bytes_max
        return SETTINGS.body_bytes_max


# Wrong for any integer of the contract: other types, fractions, and beyond 2**63 both ways.
NOT_INTEGERS = (
    '"1"',
    "1.0",
    "1.5",
    "true",
    "[1]",
    str(2**63),
    str(-(2**63) - 1),
    str(10**30),
)
NOT_STRINGS = ("1", "1.5", "true", "null", '["x"]', '{"value": "x"}', str(2**63))
ON_HAND_TOO_BIG = str(limits.ON_HAND_MAX + 1)
QUANTITY_TOO_BIG = str(limits.QUANTITY_MAX + 1)


def routes(target: Target) -> dict[str, Route]:
    sku, hold = target.sku, target.hold_id

    def template(body: Any) -> str:
        return json.dumps(body)

    found = [
        Route(
            "adjustments", "POST", f"/v1/skus/{sku}/adjustments",
            template({"location": "berlin", "delta": VALUE, "reason": "received"}), "1",
            (*NOT_INTEGERS, "null", str(limits.DELTA_MAX + 1), str(-limits.DELTA_MAX - 1)),
            AdjustmentBody,
        ),
        Route(
            "count", "PUT", f"/v1/skus/{sku}/locations/berlin",
            template({"on_hand": VALUE, "reason": "cycle_count"}), "7",
            (*NOT_INTEGERS, "null", ON_HAND_TOO_BIG, "-1"),
            CountBody,
        ),
        Route(
            "transfers", "POST", f"/v1/skus/{sku}/transfers",
            template({"from_location": "berlin", "to_location": "paris", "quantity": VALUE}), "1",
            (*NOT_INTEGERS, "null", QUANTITY_TOO_BIG, "0", "-1"),
            TransferBody,
        ),
        Route(
            "reservations", "POST", "/v1/reservations",
            template({"lines": [{"sku": sku, "quantity": VALUE}], "ttl_seconds": 60}), "1",
            (*NOT_INTEGERS, "null", QUANTITY_TOO_BIG, "0", "-1"),
            ReservationBody,
        ),
        # These take no body: one sent anyway must be JSON (any JSON), so MARK is all of it.
        Route("commit", "POST", f"/v1/reservations/{hold}/commit", MARK, "{}", views=("hold",)),
        Route("release", "POST", f"/v1/reservations/{hold}/release", MARK, "{}", views=("hold",)),
        Route(
            "extend", "POST", f"/v1/reservations/{hold}/extend",
            template({"ttl_seconds": VALUE}), "600",
            (*NOT_INTEGERS, "null", str(limits.TTL_MS_MAX // 1000 + 1), "0", "-1"),
            ExtendBody, ("hold",),
        ),
        Route(
            "batch", "POST", "/v1/batch",
            template({"operations": [
                {"op": "adjust", "sku": sku, "location": "berlin", "delta": VALUE,
                 "reason": "received"},
            ]}), "1",
            (*NOT_INTEGERS, "null", str(limits.DELTA_MAX + 1)),
            BatchBody,
        ),
        Route(
            "skus:query", "POST", "/v1/skus:query",
            template({"skus": [sku, VALUE]}), json.dumps(target.spare_sku),
            (*NOT_STRINGS, json.dumps("x" * (ID_LENGTH_MAX + 1))),
            QueryBody,
        ),
        Route(
            # null is valid here: it removes the threshold.
            "threshold", "PUT", f"/v1/skus/{sku}/locations/berlin/threshold",
            template({"low_stock_below": VALUE}), "3",
            (*NOT_INTEGERS, ON_HAND_TOO_BIG, "-1"),
            ThresholdBody, ("threshold",),
        ),
        Route(
            "webhooks", "POST", "/v1/webhooks",
            template({"url": "http://127.0.0.1:9/hook", "events": ["stock.low"], "secret": VALUE}),
            json.dumps("s" * 16),
            (*NOT_STRINGS, json.dumps("short"), json.dumps("s" * 257)),
            WebhookBody, ("webhooks",),
        ),
    ]  # fmt: skip
    return {route.name: route for route in found}


ROUTE_NAMES = [
    "adjustments",
    "count",
    "transfers",
    "reservations",
    "commit",
    "release",
    "extend",
    "batch",
    "skus:query",
    "threshold",
    "webhooks",
]
BODY_ROUTE_NAMES = [name for name in ROUTE_NAMES if name not in ("commit", "release")]


def send(
    http: httpx.Client,
    app: HttpApp,
    route: Route,
    content: bytes | Iterator[bytes],
    content_type: str | None = JSON_TYPE,
    headers: dict[str, Any] | None = None,
    path: str | None = None,
) -> httpx.Response:
    sent: dict[str, Any] = {**bearer(app.admin_key), **(headers or {})}
    if content_type is not None:
        sent["Content-Type"] = content_type
    return http.request(route.method, path or route.path, content=content, headers=sent)


@dataclass(frozen=True)
class Attempt:
    """One bad request, and the statuses its refusal may have."""

    name: str
    route: Route
    content: bytes
    statuses: frozenset[int]
    content_type: str | None = JSON_TYPE
    headers: dict[str, Any] | None = None
    path: str | None = None
    chunked: bool = False  # sent without a Content-Length


def _chunks(content: bytes, size: int = 64 * KIB) -> Iterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


def assert_all_refused(
    http: httpx.Client,
    app: HttpApp,
    target: Target,
    pool: ThreadPoolExecutor,
    attempts: list[Attempt],
) -> None:
    """Each attempt is refused quickly with a 4xx problem, and after it nothing has changed
    (what its route could change, and the change feed); then the app still serves."""

    def attempt(unchanged: Unchanged, bad: Attempt) -> None:
        content = _chunks(bad.content) if bad.chunked else bad.content
        started = time.monotonic()
        answer = send(http, app, bad.route, content, bad.content_type, bad.headers, bad.path)
        elapsed_seconds = time.monotonic() - started
        assert_refused(answer, bad.statuses, bad.name)
        assert elapsed_seconds < REFUSAL_SECONDS_MAX, (bad.name, elapsed_seconds)
        unchanged.check(bad.name)

    by_route: dict[str, list[Attempt]] = {}
    for bad in attempts:
        by_route.setdefault(bad.route.name, []).append(bad)
    for group in by_route.values():
        # Nothing may change, so one reading before serves as each case's "before".
        unchanged = Unchanged(http, app, target, group[0].route.views)
        list(pool.map(functools.partial(attempt, unchanged), group))
    assert_still_serving(http, app, target)


# -- 1. malformed JSON ------------------------------------------------------------------------

NOT_JSON = frozenset({400})
# No body where one is needed, or one not declared JSON (so not read as such): 400 or 422.
UNREADABLE = frozenset({400, 422})
VALIDATION = frozenset({422})


def _invalid_utf8(valid: bytes) -> bytes:
    # Inside a string, where a lenient decoder would let it through as a replacement character.
    return valid.replace(b'"', b'"\xff\xfe', 1) if b'"' in valid else b'"\xff\xfe"'


def malformed(route: Route) -> list[Attempt]:
    valid = route.body()
    cases = [
        ("truncated", valid[: len(valid) // 2]),
        ("trailing garbage", valid + b" garbage"),
        ("NaN", route.body("NaN")),
        ("-Infinity", route.body("-Infinity")),
        ("a byte order mark", BOM + valid),
        ("invalid UTF-8", _invalid_utf8(valid)),
        ("whitespace only", b" \r\n\t "),
        ("a NUL byte", b"\x00"),
    ]
    attempts = [Attempt(name, route, content, NOT_JSON) for name, content in cases]
    utf16 = valid.decode().encode("utf-16")
    attempts.append(Attempt("UTF-16", route, utf16, NOT_JSON, "application/json; charset=utf-16"))
    if route.model is not None:
        attempts += [
            Attempt("empty body", route, b"", UNREADABLE),
            Attempt("declared text/plain", route, valid, UNREADABLE, "text/plain"),
            Attempt("no Content-Type", route, valid, UNREADABLE, None),
        ]
    else:
        # No body is valid here, and so is any JSON whatever its declared type; a form is not.
        attempts.append(Attempt("a form, not JSON", route, b"a=b", NOT_JSON, FORM_TYPE))
    return attempts


@pytest.mark.parametrize("route_name", ROUTE_NAMES)
def test_malformed_json_is_a_400_and_changes_nothing(
    http_app: HttpApp,
    http: httpx.Client,
    target: Target,
    pool: ThreadPoolExecutor,
    route_name: str,
) -> None:
    route = routes(target)[route_name]
    if route.model is not None:
        # Each case differs from an accepted request by only what it breaks.
        route.model.model_validate_json(route.body())
    assert_all_refused(http, http_app, target, pool, malformed(route))


# -- 2. wrong types ---------------------------------------------------------------------------


def wrong_types(route: Route) -> list[Attempt]:
    cases = [(f"{route.name} with {value[:40]}", route.body(value)) for value in route.wrong_values]
    # The whole body of another type than an object, or an object where an array goes.
    valid = route.body()
    cases += [
        ("the body in an array", b"[" + valid + b"]"),
        ("null", b"null"),
        ("a string", json.dumps(valid.decode()).encode()),
        ("an empty object", b"{}"),
        ("an unknown member", valid[:-1] + b', "unknown": 1}'),
    ]
    if b'[{"' in valid:  # {"lines": {...}} rather than {"lines": [{...}]}
        cases.append(
            ("an object for an array", valid.replace(b"[{", b"{", 1).replace(b"}]", b"}", 1))
        )
    return [Attempt(name, route, content, VALIDATION) for name, content in cases]


@pytest.mark.parametrize("route_name", BODY_ROUTE_NAMES)
def test_wrong_types_are_a_422_and_change_nothing(
    http_app: HttpApp,
    http: httpx.Client,
    target: Target,
    pool: ThreadPoolExecutor,
    route_name: str,
) -> None:
    route = routes(target)[route_name]
    assert_all_refused(http, http_app, target, pool, wrong_types(route))


# -- 3. huge and deeply nested bodies ---------------------------------------------------------


def huge_and_deep(route: Route, target: Target) -> list[Attempt]:
    limit = route.body_bytes_max
    valid = route.body()
    over = valid + b" " * (limit + 1 - len(valid))

    def fits(content: bytes, status: int) -> frozenset[int]:
        return frozenset({status if len(content) <= limit else 413})

    deep_lists = b"[" * NESTING_LEVELS + b"]" * NESTING_LEVELS
    deep_objects = b'{"a":' * NESTING_LEVELS + b"1" + b"}" * NESTING_LEVELS
    deep_inside = route.body("[" * NESTING_LEVELS + "]" * NESTING_LEVELS)
    attempts = [
        Attempt("one byte over the limit", route, over, frozenset({413})),
        Attempt("one byte over the limit, chunked", route, over, frozenset({413}), chunked=True),
        # Exactly at the limit the body is read (and refused for what it is, not for its size).
        Attempt("at the limit, not JSON", route, b" " * (limit - 1) + b"x", NOT_JSON),
        Attempt("[[[...]]] 100,000 deep", route, deep_lists, fits(deep_lists, 400)),
        Attempt('{"a":{"a":...}} 100,000 deep', route, deep_objects, fits(deep_objects, 400)),
        Attempt("100,000 deep inside a body", route, deep_inside, fits(deep_inside, 400)),
        # Deeper than the parser goes, but small.
        Attempt("5,000 deep inside a body", route, route.body("[" * 5_000 + "]" * 5_000), NOT_JSON),
        # More digits than Python turns into an int.
        Attempt("a 5,000-digit number", route, route.body("9" * 5_000), NOT_JSON),
    ]
    # Within the size limit, but one item more than a list may hold.
    many = {
        "reservations": {
            "lines": [{"sku": target.sku, "quantity": 1}] * (limits.LINES_PER_HOLD_MAX + 1)
        },
        "batch": {
            "operations": [{"op": "commit", "reservation_id": "r_x"}] * (BATCH_OPERATIONS_MAX + 1)
        },
        "skus:query": {"skus": [target.sku] * (QUERY_SKUS_MAX + 1)},
    }.get(route.name)
    if many is not None:
        attempts.append(Attempt("one item too many", route, json.dumps(many).encode(), VALIDATION))
    return attempts


@pytest.mark.parametrize("route_name", ROUTE_NAMES)
def test_huge_and_deeply_nested_bodies_are_refused_quickly(
    http_app: HttpApp,
    http: httpx.Client,
    target: Target,
    pool: ThreadPoolExecutor,
    route_name: str,
) -> None:
    route = routes(target)[route_name]
    assert_all_refused(http, http_app, target, pool, huge_and_deep(route, target))


# -- 4. overlong and odd ids and headers ------------------------------------------------------

OVERLONG_IDS = ["x" * (ID_LENGTH_MAX + 1), "x" * (10 * KIB)]
# Outside the contract's [A-Za-z0-9._:/-]: emoji, a right-to-left override, NUL, a newline,
# and characters with a meaning in URLs.
ODD_IDS = ["📦", "\u202eevil", "a\x00b", "a\nb", "100%", "a?b"]
BAD_IDS = [(value, VALIDATION) for value in OVERLONG_IDS + ODD_IDS]
# Path segments the client normalises ("..") or the server splits (an encoded "/") make
# another path, which no route has for this method.
RESHAPING_IDS = [(value, frozenset({404, 405})) for value in ("..", "a/b")]


def _segment(value: str) -> str:
    return quote(value, safe="")


def bad_ids(place: str, target: Target) -> list[Attempt]:
    table = routes(target)
    attempts = []
    if place == "sku in the path":
        # The SKU of a stock route and of a threshold route (each declares its own).
        for name in ("adjustments", "threshold"):
            route = table[name]
            # "a/b" is a valid SKU: only ".." reshapes this path.
            for value, statuses in [*BAD_IDS, RESHAPING_IDS[0]]:
                path = route.path.replace(target.sku, _segment(value))
                case = f"{name} {value[:20]!r}"
                attempts.append(Attempt(case, route, route.body(), statuses, path=path))
    elif place == "location in the path":
        for name in ("count", "threshold"):
            route = table[name]
            for value, statuses in BAD_IDS + RESHAPING_IDS:
                path = route.path.replace("/locations/berlin", f"/locations/{_segment(value)}")
                case = f"{name} {value[:20]!r}"
                attempts.append(Attempt(case, route, route.body(), statuses, path=path))
    elif place == "reservation id in the path":
        overlong = ["r" * (limits.HOLD_ID_LENGTH_MAX + 1), "r" * (10 * KIB)]
        # The contract gives a reservation id no alphabet: an odd one names none (404).
        cases = [(value, VALIDATION) for value in overlong]
        cases += [(value, frozenset({404})) for value in ODD_IDS] + RESHAPING_IDS
        for name in ("commit", "extend"):  # release shares commit's handler
            route = table[name]
            for value, statuses in cases:
                path = route.path.replace(target.hold_id, _segment(value))
                case = f"{name} {value[:20]!r}"
                attempts.append(Attempt(case, route, route.body(), statuses, path=path))
    else:
        # Each id a body carries, in turn; JSON escapes keep every character valid JSON.
        carried = [
            ("adjustments", "berlin"),
            ("transfers", "paris"),
            ("reservations", target.sku),
            ("batch", target.sku),
            ("skus:query", target.sku),
        ]
        for name, good in carried:
            route = table[name]
            for value, statuses in BAD_IDS:
                content = route.body().replace(
                    json.dumps(good).encode(), json.dumps(value).encode(), 1
                )
                attempts.append(Attempt(f"{name} {value[:20]!r}", route, content, statuses))
    return attempts


@pytest.mark.parametrize(
    "place",
    ["sku in the path", "location in the path", "reservation id in the path", "ids in the body"],
)
def test_overlong_and_odd_ids_are_refused_and_change_nothing(
    http_app: HttpApp,
    http: httpx.Client,
    target: Target,
    pool: ThreadPoolExecutor,
    place: str,
) -> None:
    assert_all_refused(http, http_app, target, pool, bad_ids(place, target))


def bad_headers(header: str, app: HttpApp, target: Target) -> list[Attempt]:
    table = routes(target)
    values: list[tuple[str | bytes, frozenset[int]]]
    if header == "Idempotency-Key":
        # Every POST and PUT takes 1 to 255 printable ASCII characters.
        names = ROUTE_NAMES
        values = [("k" * 256, VALIDATION), ("", VALIDATION), ("clé-🔑".encode(), VALIDATION)]
    elif header == "Authorization":
        names = ["adjustments", "reservations"]
        unauthorized = frozenset({401})
        values = [
            # Large, but within what the ingress passes on (16 KiB is not: see below).
            ("Bearer " + "x" * (12 * KIB), unauthorized),
            ("Bearer " + app.admin_key + "x", unauthorized),
            ("Bearer " + app.admin_key[:-1], unauthorized),
            ("Bearer é".encode(), unauthorized),
            ("Bearer", unauthorized),
            ("Basic dXNlcjpwYXNz", unauthorized),
            (app.admin_key, unauthorized),
        ]
    else:
        names = ["adjustments", "count", "transfers"]
        garbage = ["garbage", '"abc"', '"1', "W/", '"-1"', '""', '"1", "2"', "*x", "x" * (10 * KIB)]
        values = [(value, NOT_JSON) for value in garbage]
        values += [
            ('"é"'.encode(), NOT_JSON),
            # Digits to `str.isdigit` (the header's latin-1 "²" and "¹"), none to `int`.
            (b'"\xb2"', NOT_JSON),
            (b'W/"1\xb9"', NOT_JSON),
            # More digits than Python turns into an int.
            ('"' + "9" * 5_000 + '"', NOT_JSON),
            # Well-formed, but no SKU is at that version.
            ('"' + "9" * 30 + '"', frozenset({412})),
        ]
    return [
        Attempt(
            f"{name} {header}: {value[:30]!r}",
            table[name],
            table[name].body(),
            statuses,
            headers={header: value},
        )
        for name in names
        for value, statuses in values
    ]


@pytest.mark.parametrize("header", ["Idempotency-Key", "Authorization", "If-Match"])
def test_overlong_and_odd_headers_are_refused_and_change_nothing(
    http_app: HttpApp,
    http: httpx.Client,
    target: Target,
    pool: ThreadPoolExecutor,
    header: str,
) -> None:
    assert_all_refused(http, http_app, target, pool, bad_headers(header, http_app, target))


def test_headers_the_ingress_refuses_get_a_4xx_and_change_nothing(
    http_app: HttpApp, http: httpx.Client, target: Target
) -> None:
    """A header over the ingress's 16 KiB buffer, or with a control character, is refused by
    the HTTP servers in front of the app (HAProxy, uvicorn): a 4xx, but theirs, not a problem."""
    route = routes(target)["adjustments"]
    unchanged = Unchanged(http, http_app, target)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("a 16 KiB Authorization", {"Authorization": "Bearer " + "x" * (16 * KIB)}),
        ("a 16 KiB Idempotency-Key", {"Idempotency-Key": "k" * (16 * KIB)}),
        ("a control character", {"Idempotency-Key": b"a\x01b"}),
    ]
    for name, headers in cases:
        answer = send(http, http_app, route, route.body(), headers=headers)
        assert 400 <= answer.status_code < 500, (name, answer.status_code, answer.text[:200])
        if answer.headers.get("content-type", "").startswith(PROBLEM):
            assert_refused(answer, {answer.status_code}, name)
        unchanged.check(name)
    assert_still_serving(http, http_app, target)


# -- 5. slow clients --------------------------------------------------------------------------


def _open(app: HttpApp) -> socket.socket:
    url = httpx.URL(app.base_url)
    assert url.host and url.port
    return socket.create_connection((url.host, url.port), timeout=10.0)


def _head(app: HttpApp, path: str, content_length: int, content_type: str = JSON_TYPE) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: inventory\r\n"
        f"Authorization: Bearer {app.admin_key}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode()


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


def _read_answer(sock: socket.socket, deadline: float) -> RawAnswer | None:
    """The answer on `sock` by `deadline`, or None if the server closed it without one."""
    received = b""
    while True:
        if b"\r\n\r\n" in received:
            head, _, body = received.partition(b"\r\n\r\n")
            status_line, *lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if len(body) >= int(headers.get("content-length", "0")):
                return RawAnswer(int(status_line.split()[1]), headers, body)
        remaining_seconds = deadline - time.monotonic()
        if remaining_seconds <= 0:
            pytest.fail(f"no answer and no close by the deadline; received {received[:200]!r}")
        sock.settimeout(remaining_seconds)
        try:
            chunk = sock.recv(64 * KIB)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            assert not received, f"the connection closed mid-answer: {received[:200]!r}"
            return None
        received += chunk


def _assert_served_meanwhile(http: httpx.Client, app: HttpApp, target: Target) -> None:
    """/healthz and a real reservation (then released) are answered quickly."""
    started = time.monotonic()
    assert http.get("/healthz").status_code == 200
    health_seconds = time.monotonic() - started
    started = time.monotonic()
    hold = http.post(
        "/v1/reservations",
        json={"lines": [{"sku": target.spare_sku, "quantity": 1}]},
        headers=bearer(app.writer_key),
    )
    reserve_seconds = time.monotonic() - started
    assert hold.status_code == 201, hold.text
    assert max(health_seconds, reserve_seconds) < SERVED_QUICKLY_SECONDS, (
        health_seconds,
        reserve_seconds,
    )
    released = http.post(
        f"/v1/reservations/{hold.json()['reservation_id']}/release",
        headers=bearer(app.writer_key),
    )
    assert released.status_code == 200, released.text


def test_stalled_bodies_do_not_hold_up_others_and_are_answered_408(
    http_app: HttpApp, http: httpx.Client, target: Target
) -> None:
    """Clients that send their headers and then part of the body, or none of it, and stop."""
    route = routes(target)["adjustments"]
    body = route.body()
    unchanged = Unchanged(http, http_app, target)
    cut_points = [0, 1, len(body) // 2, len(body) - 1]
    stalled = []
    started = time.monotonic()
    for cut in cut_points:
        sock = _open(http_app)
        sock.sendall(_head(http_app, route.path, len(body)) + body[:cut])
        stalled.append(sock)
    try:
        _assert_served_meanwhile(http, http_app, target)
        # Meanwhile: none of the stalled requests is answered yet.
        readable, _, _ = select.select(stalled, [], [], 0)
        assert readable == [], "a stalled request was answered before the others were served"
        # The app answers a body whose next part has not come for `body_read_timeout_seconds`.
        deadline = started + SETTINGS.body_read_timeout_seconds + STALL_ANSWER_MARGIN_SECONDS
        for cut, sock in zip(cut_points, stalled, strict=True):
            answer = _read_answer(sock, deadline)
            if answer is not None:  # closing without an answer would do as well
                assert answer.status == 408, (cut, answer)
                assert answer.headers["content-type"].split(";")[0] == PROBLEM, answer.headers
                problem = json.loads(answer.body)
                assert problem["type"] == "/problems/request-timeout", problem
                assert problem["status"] == 408, problem
    finally:
        for sock in stalled:
            sock.close()
    unchanged.check("stalled bodies")
    assert_still_serving(http, http_app, target)


def test_a_dribbled_body_does_not_hold_up_others_and_is_answered(
    http_app: HttpApp, http: httpx.Client, target: Target
) -> None:
    """A client that sends its body one byte at a time, each well within the read timeout:
    others are served meanwhile, and the body, once whole, is answered (422: delta is text)."""
    route = routes(target)["adjustments"]
    body = route.body('"1"')
    unchanged = Unchanged(http, http_app, target)
    sock = _open(http_app)
    sent_some, others_served = threading.Event(), threading.Event()
    failures: list[OSError] = []

    def dribble() -> None:
        try:
            sock.sendall(_head(http_app, route.path, len(body)))
            for index in range(len(body) - 1):
                sock.sendall(body[index : index + 1])
                sent_some.set()
                time.sleep(DRIBBLE_INTERVAL_SECONDS)  # pacing the client, not waiting for it
            # The last byte only once the others were served, so they were served meanwhile;
            # well within the read timeout even if that never comes.
            others_served.wait(timeout=SETTINGS.body_read_timeout_seconds / 2)
            sock.sendall(body[-1:])
        except OSError as error:
            failures.append(error)
            sent_some.set()

    dribbler = threading.Thread(target=dribble, daemon=True)
    try:
        dribbler.start()
        assert sent_some.wait(timeout=SERVED_QUICKLY_SECONDS)
        _assert_served_meanwhile(http, http_app, target)
        readable, _, _ = select.select([sock], [], [], 0)
        assert readable == [], "the dribbled request was answered before its body was whole"
        others_served.set()
        dribbler.join(timeout=len(body) * DRIBBLE_INTERVAL_SECONDS + SERVED_QUICKLY_SECONDS)
        assert not dribbler.is_alive() and not failures, failures
        answer = _read_answer(sock, time.monotonic() + SERVED_QUICKLY_SECONDS)
        assert answer is not None
        assert answer.status == 422, answer
        assert answer.headers["content-type"].split(";")[0] == PROBLEM, answer.headers
        assert json.loads(answer.body)["type"] == "/problems/validation-error"
    finally:
        sock.close()
    unchanged.check("dribbled body")
    assert_still_serving(http, http_app, target)


def test_a_restock_file_declared_over_256_mib_is_413_before_its_body_is_read(
    http_app: HttpApp, http: httpx.Client, target: Target
) -> None:
    """Restock bodies may have up to 256 MiB (docs/restock.md). A Content-Length above is
    refused from the headers alone, although no byte of the body is sent; one of exactly
    256 MiB passes that check and waits for its body (408 here, as none comes)."""
    limit = SETTINGS.restock_body_bytes_max
    assert limit == 256 * KIB * KIB
    unchanged = Unchanged(http, http_app, target)
    at_limit, over = _open(http_app), _open(http_app)
    try:
        started = time.monotonic()
        at_limit.sendall(_head(http_app, "/v1/restock-jobs", limit, "text/csv"))
        over.sendall(_head(http_app, "/v1/restock-jobs", limit + 1, "text/csv"))
        answer = _read_answer(over, started + REFUSAL_SECONDS_MAX)
        assert answer is not None, "refused without an answer"
        assert answer.status == 413, answer
        assert answer.headers["content-type"].split(";")[0] == PROBLEM, answer.headers
        problem = json.loads(answer.body)
        assert (problem["type"], problem["status"]) == ("/problems/payload-too-large", 413)
        assert str(limit) in problem["detail"], problem
        timeout_seconds = SETTINGS.body_read_timeout_seconds
        waited = _read_answer(at_limit, started + timeout_seconds + STALL_ANSWER_MARGIN_SECONDS)
        # Answered only once its body had not come for the read timeout: it was not refused
        # for its size. (Closing without an answer would do as well.)
        assert time.monotonic() - started >= timeout_seconds
        if waited is not None:
            assert waited.status == 408, waited
    finally:
        at_limit.close()
        over.close()
    unchanged.check("a restock body over 256 MiB")
    assert_still_serving(http, http_app, target)
