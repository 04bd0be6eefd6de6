"""The change feed over real HTTP: pages with a cursor, the SSE stream resumed with
Last-Event-ID, a SKU's history, and a SKU as of a time."""

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.http.conftest import HttpApp, assert_problem, bearer, sku_view, stock

pytestmark = pytest.mark.ray

Event = dict[str, Any]


def feed_end(http: httpx.Client, app: HttpApp) -> str:
    """A cursor at the feed's current end."""
    cursor = None
    while True:
        params = {"limit": "10000", **({"cursor": cursor} if cursor else {})}
        answer = http.get("/v1/events", params=params, headers=bearer(app.reader_key))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        cursor = body["cursor"]
        if not body["events"]:
            return str(cursor)


def read_from(
    http: httpx.Client, app: HttpApp, cursor: str, limit: int = 7
) -> tuple[list[Event], str]:
    """Every event after `cursor`, in small pages (so pages end inside records too)."""
    events: list[Event] = []
    while True:
        answer = http.get(
            "/v1/events", params={"cursor": cursor, "limit": str(limit)},
            headers=bearer(app.reader_key),
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        body = answer.json()
        events.extend(body["events"])
        cursor = body["cursor"]
        if not body["events"]:
            return events, cursor


def key_of(event: Event) -> tuple[Any, ...]:
    return (event["shard"], event["lsn"], event["sku"], event["location"], event["version"])


def make_changes(http: httpx.Client, app: HttpApp, sku: str) -> str:
    """An adjustment, a count, a transfer, and a reservation committed; its id."""
    admin = bearer(app.admin_key)
    stock(http, app, sku, 10)
    answer = http.post(
        f"/v1/skus/{sku}/adjustments",
        json={"location": "berlin", "delta": 5, "reason": "received", "reference": "po-1"},
        headers=admin,
    )
    assert answer.status_code == 200, answer.text
    answer = http.post(
        f"/v1/skus/{sku}/transfers",
        json={"from_location": "berlin", "to_location": "paris", "quantity": 3},
        headers=admin,
    )
    assert answer.status_code == 200, answer.text
    held = http.post(
        "/v1/reservations",
        json={"lines": [{"sku": sku, "quantity": 2, "location": "berlin"}]},
        headers=bearer(app.writer_key),
    )
    assert held.status_code == 201, held.text
    reservation = held.json()["reservation_id"]
    done = http.post(f"/v1/reservations/{reservation}/commit", headers=bearer(app.writer_key))
    assert done.status_code == 200, done.text
    return str(reservation)


def test_the_feed_tells_each_change_once_with_before_and_after(
    http_app: HttpApp, http: httpx.Client
) -> None:
    start = feed_end(http, http_app)
    sku = http_app.sku()
    reservation = make_changes(http, http_app, sku)
    events, cursor = read_from(http, http_app, start)
    ours = [event for event in events if event["sku"] == sku]
    assert [(e["type"], e["location"], e["delta"]) for e in ours] == [
        ("stock.set", "berlin", 10),
        ("stock.adjusted", "berlin", 5),
        ("stock.transferred", "berlin", -3),
        ("stock.transferred", "paris", 3),
        ("reservation.created", "berlin", 0),
        ("reservation.committed", "berlin", -2),
    ]
    created, committed = ours[4], ours[5]
    assert created["reservation_id"] == committed["reservation_id"] == reservation
    assert created["before"] == {"on_hand": 12, "reserved": 0, "available": 12}
    assert created["after"] == {"on_hand": 12, "reserved": 2, "available": 10}
    assert committed["after"] == {"on_hand": 10, "reserved": 0, "available": 10}
    assert ours[1]["reference"] == "po-1" and ours[1]["reason"] == "received"
    assert [e["version"] for e in ours] == [1, 2, 3, 3, 4, 5]
    assert len({key_of(e) for e in events}) == len(events), "an event was given twice"
    # The cursor continues where it stopped: nothing new, nothing again.
    again, _ = read_from(http, http_app, cursor)
    assert not [event for event in again if event["sku"] == sku]


def test_a_bad_cursor_is_400(http_app: HttpApp, http: httpx.Client) -> None:
    for cursor in ("nonsense", "f1" + "A" * 10, ""):
        answer = http.get(
            "/v1/events", params={"cursor": cursor or "f1"}, headers=bearer(http_app.reader_key)
        )
        assert_problem(answer, 400, "validation-error")
    assert_problem(http.get("/v1/events"), 401, "unauthorized")


def sse_events(
    http: httpx.Client, app: HttpApp, headers: dict[str, str], until_sku: str, count: int
) -> list[tuple[str, Event]]:
    """(id, event) from the stream until `count` events of `until_sku` arrived."""
    found: list[tuple[str, Event]] = []
    ours = 0
    with http.stream(
        "GET", "/v1/events/stream", headers={**bearer(app.reader_key), **headers}, timeout=30.0
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        event_id, data = None, None
        for line in answer.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and event_id and data:
                found.append((event_id, data))
                ours += data["sku"] == until_sku
                event_id, data = None, None
                if ours >= count:
                    return found
    return found


def test_the_stream_resumed_with_last_event_id_loses_and_repeats_nothing(
    http_app: HttpApp, http: httpx.Client
) -> None:
    start = feed_end(http, http_app)
    first, second = http_app.sku(), http_app.sku()
    make_changes(http, http_app, first)
    part_one = sse_events(http, http_app, {"Last-Event-ID": start}, first, 3)
    make_changes(http, http_app, second)
    part_two = sse_events(http, http_app, {"Last-Event-ID": part_one[-1][0]}, second, 6)
    streamed = [event for _, event in part_one + part_two]
    paged, _ = read_from(http, http_app, start, limit=1000)
    wanted = {first, second}
    assert [key_of(e) for e in streamed if e["sku"] in wanted] == [
        key_of(e) for e in paged if e["sku"] in wanted
    ]
    assert len({key_of(e) for e in streamed}) == len(streamed)


def test_history_lists_a_skus_events_newest_first(http_app: HttpApp, http: httpx.Client) -> None:
    sku = http_app.sku()
    make_changes(http, http_app, sku)
    answer = http.get(
        f"/v1/skus/{sku}/history", params={"limit": "4"}, headers=bearer(http_app.reader_key)
    )
    assert answer.status_code == 200, answer.text
    types = [event["type"] for event in answer.json()["events"]]
    assert types == [
        "reservation.committed", "reservation.created", "stock.transferred", "stock.transferred",
    ]  # fmt: skip
    missing = http.get(f"/v1/skus/{http_app.sku()}/history", headers=bearer(http_app.reader_key))
    assert_problem(missing, 404, "not-found")


def _instant_after_now() -> str:
    """An RFC 3339 instant after every change made so far, and before any made next."""
    now_ms = time.time_ns() // 1_000_000
    while time.time_ns() // 1_000_000 <= now_ms + 1:
        time.sleep(0.001)
    return datetime.fromtimestamp((now_ms + 1) / 1000, UTC).isoformat().replace("+00:00", "Z")


def test_as_of_answers_the_stock_observed_at_each_time(
    http_app: HttpApp, http: httpx.Client
) -> None:
    sku = http_app.sku()
    admin = bearer(http_app.admin_key)
    before_any = _instant_after_now()
    observed: list[tuple[str, dict[str, Any]]] = []
    line = {"sku": sku, "quantity": 3, "location": "berlin"}
    move = {"from_location": "paris", "to_location": "berlin", "quantity": 1}
    steps = [
        ("PUT", f"/v1/skus/{sku}/locations/berlin", {"on_hand": 10, "reason": "cycle_count"}),
        (
            "POST",
            f"/v1/skus/{sku}/adjustments",
            {"location": "paris", "delta": 4, "reason": "other"},
        ),
        ("POST", "/v1/reservations", {"lines": [line]}),
        ("POST", f"/v1/skus/{sku}/transfers", move),
    ]
    for method, path, body in steps:
        answer = http.request(method, path, json=body, headers=admin)
        assert answer.status_code in (200, 201), answer.text
        observed.append((_instant_after_now(), sku_view(http, http_app, sku)))
    for at, view in observed:
        answer = http.get(f"/v1/skus/{sku}", params={"as_of": at}, headers=admin)
        assert answer.status_code == 200, answer.text
        assert answer.json()["locations"] == view["locations"], at
        assert answer.json()["version"] == view["version"], at
    early = http.get(f"/v1/skus/{sku}", params={"as_of": before_any}, headers=admin)
    assert_problem(early, 404, "not-found")
    bad = http.get(f"/v1/skus/{sku}", params={"as_of": "yesterday"}, headers=admin)
    assert_problem(bad, 422, "validation-error")
