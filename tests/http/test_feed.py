"""The change feed over real HTTP: pages with a cursor, the SSE stream resumed with
Last-Event-ID and its bounds, a SKU's history, a SKU as of a time, and what a cursor or an
`as_of` older than the retention gets."""

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import ray
from ray import serve

from inventory_actors.cluster.client import InventoryClient
from inventory_actors.domain import AdjustStock
from inventory_actors.feed.webhook_dispatcher import DISPATCHER_NAME
from inventory_actors.restock.runtime import JOBS_ACTOR_NAME
from inventory_actors.shard.config import ShardConfig
from inventory_actors.shard.feed_pages import Cursor, Position
from inventory_actors.shard.protocol import Submission
from serve_app.deployment import deployment_for
from serve_app.keys import KeyStore, Role
from serve_app.service import Settings
from tests.conftest import wait_for
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


def test_as_of_walks_back_from_that_time_and_is_422_rather_than_guess(
    http_app: HttpApp, http: httpx.Client
) -> None:
    """20,001 changes after a time: the SKU then is still exact (found walking back from that
    time). Where the answer needs more than 20,000 of its records, 422 `history-too-long`."""
    sku = http_app.sku()
    admin = bearer(http_app.admin_key)
    stock(http, http_app, sku, 5)
    then = _instant_after_now()
    before_busy = sku_view(http, http_app, sku)
    # Written to the app's shards directly: 20,001 log records, a thousand per call.
    shards = InventoryClient.connect(http_app.data_dir, namespace=http_app.namespace)
    for start in range(0, 20_001, 1_000):
        batch = [
            Submission(AdjustStock(sku, "paris", 1, "received"), f"{sku}-{index}")
            for index in range(start, min(start + 1_000, 20_001))
        ]
        assert all(outcome.ok for outcome in shards.execute(batch))
    after_busy = _instant_after_now()
    answer = http.get(f"/v1/skus/{sku}", params={"as_of": then}, headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json() == before_busy
    # Berlin's newest change by then is behind all 20,001 records of Paris: too far to walk.
    far = http.get(f"/v1/skus/{sku}", params={"as_of": after_busy}, headers=admin)
    assert_problem(far, 422, "history-too-long")


# A second app in the session's Serve, on its own two shards, which keep no record they need
# not keep (retention 0: a snapshot lets housekeeping prune the log up to its start), and with
# low stream bounds.
PRUNING_PREFIX = "/pruning"
PRUNING_CONFIG = ShardConfig(event_retention_seconds=0.0, housekeeping_interval_seconds=0.1)
STREAMS_MAX, STREAM_SECONDS = 3, 3.0


@pytest.fixture(scope="module")
def pruning_app(http_app: HttpApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpApp]:
    data_dir = tmp_path_factory.mktemp("pruning-app")
    namespace = f"pruning-{uuid.uuid4().hex[:12]}"
    keys = KeyStore.open(data_dir)
    created = keys.initialize()
    assert created is not None
    # Every key exists before the app starts, as for the session's app: a replica reads the
    # key file when it starts and then at most once a second.
    writer_key, reader_key = keys.create(Role.WRITER)[1], keys.create(Role.READER)[1]
    shards = InventoryClient.connect(
        data_dir, shard_count=2, namespace=namespace, config=PRUNING_CONFIG
    )
    settings = Settings(
        data_dir=str(data_dir), shards=2, namespace=namespace,
        streams_per_replica_max=STREAMS_MAX, stream_seconds_max=STREAM_SECONDS,
    )  # fmt: skip
    deployment = deployment_for(settings, num_replicas=1, autoscaling_config=None)
    serve.run(deployment.bind(settings), name="pruning", route_prefix=PRUNING_PREFIX)
    app = HttpApp(
        http_app.base_url + PRUNING_PREFIX, created[1], writer_key,
        reader_key, data_dir, namespace, keys, shards.partition,
    )  # fmt: skip
    try:

        def ready() -> bool:
            return httpx.get(f"{app.base_url}/readyz", timeout=5.0).status_code == 200

        wait_for(ready, 120, "the second app to be ready")
        yield app
    finally:
        serve.delete("pruning")
        # The app's detached actors go with it: its webhook dispatcher and restock jobs.
        for name in (DISPATCHER_NAME, JOBS_ACTOR_NAME):
            with suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        shards.shutdown()


@pytest.fixture
def pruned_http(pruning_app: HttpApp) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=pruning_app.base_url, timeout=30.0) as client:
        yield client


def prune_whole_log(app: HttpApp, shard_id: int) -> int:
    """Snapshot the shard, then wait until housekeeping pruned its whole log; its last LSN."""
    shard = app.shard_actor(shard_id)
    assert ray.get(shard.snapshot.remote(), timeout=60)

    def pruned() -> int | None:
        first, records = ray.get(shard.read_feed.remote(0, 1), timeout=10)
        return None if records else int(first) - 1

    return wait_for(pruned, 30, f"shard {shard_id}'s log pruned whole")


def test_an_expired_cursor_is_410_and_without_a_cursor_reading_starts_at_the_oldest_kept(
    pruning_app: HttpApp, pruned_http: httpx.Client
) -> None:
    """A client paused with a cursor that read nothing of shard 1 (it was empty); shard 1 then
    writes and prunes records: that cursor gets 410 `cursor-expired` (pages and stream), never
    a silent gap."""
    http, app = pruned_http, pruning_app
    reader = bearer(app.reader_key)
    kept, pruned = app.sku(shard=0), app.sku(shard=1)
    stock(http, app, kept, 1)
    paused = feed_end(http, app)
    stock(http, app, pruned, 2)
    prune_whole_log(app, 1)
    answer = http.get("/v1/events", params={"cursor": paused}, headers=reader)
    body = assert_problem(answer, 410, "cursor-expired")
    assert "without a cursor" in body["detail"]
    stream = http.get("/v1/events/stream", headers={**reader, "Last-Event-ID": paused})
    assert_problem(stream, 410, "cursor-expired")
    # A cursor from an older version, holding position 0 for shard 1, is refused the same.
    held_zero = Cursor((Cursor.decode(paused, 2).positions[0], Position(0, 0))).encode()
    answer = http.get("/v1/events", params={"cursor": held_zero}, headers=reader)
    assert_problem(answer, 410, "cursor-expired")
    fresh = http.get("/v1/events", params={"limit": "1000"}, headers=reader)
    assert fresh.status_code == 200, fresh.text
    skus = {event["sku"] for event in fresh.json()["events"]}
    assert kept in skus and pruned not in skus


def test_as_of_before_what_the_log_keeps_is_410_also_when_it_was_pruned_whole(
    pruning_app: HttpApp, pruned_http: httpx.Client
) -> None:
    http, app = pruned_http, pruning_app
    pruned = app.sku(shard=1)
    before_pruned = _instant_after_now()
    stock(http, app, pruned, 2)
    prune_whole_log(app, 1)
    after_snapshot = _instant_after_now()
    # Before the snapshot the pruned records were all there is: unknowable, 410. Since the
    # snapshot nothing changed (the log is empty): as now.
    admin = bearer(app.admin_key)
    early = http.get(f"/v1/skus/{pruned}", params={"as_of": before_pruned}, headers=admin)
    assert_problem(early, 410, "cursor-expired")
    late = http.get(f"/v1/skus/{pruned}", params={"as_of": after_snapshot}, headers=admin)
    assert late.status_code == 200, late.text
    assert late.json() == sku_view(http, app, pruned)


@contextmanager
def open_stream(http: httpx.Client, app: HttpApp, **headers: str) -> Iterator[Iterator[str]]:
    """A stream's lines once the replica holds its slot (its first line, a comment, came)."""
    with http.stream(
        "GET", "/v1/events/stream", headers={**bearer(app.reader_key), **headers}
    ) as answer:
        assert answer.status_code == 200, answer.read()
        lines = answer.iter_lines()
        assert next(lines) == ": connected"
        yield lines


def test_a_replica_serves_its_streams_at_most_and_refuses_more_with_503(
    pruning_app: HttpApp, pruned_http: httpx.Client
) -> None:
    http, app = pruned_http, pruning_app
    with ExitStack() as streams:
        last = ExitStack()
        for _ in range(STREAMS_MAX - 1):
            streams.enter_context(open_stream(http, app))
        last.enter_context(open_stream(http, app))
        refused = http.get("/v1/events/stream", headers=bearer(app.reader_key))
        assert_problem(refused, 503, "overloaded")
        assert refused.headers["retry-after"] == "5"
        last.close()

        def admitted() -> bool:
            """Once the replica saw the closed stream go, the next one is served."""
            with http.stream("GET", "/v1/events/stream", headers=bearer(app.reader_key)) as answer:
                return answer.status_code == 200 and next(answer.iter_lines()) == ": connected"

        wait_for(admitted, 30, "a slot freed")


def test_a_stream_ends_after_its_time_and_resuming_with_its_last_id_loses_nothing(
    pruning_app: HttpApp, pruned_http: httpx.Client
) -> None:
    http, app = pruned_http, pruning_app
    start = feed_end(http, app)
    first, second = app.sku(), app.sku()
    stock(http, app, first, 1)
    opened = time.monotonic()
    with open_stream(http, app, **{"Last-Event-ID": start}) as lines:
        part_one = sse_lines(lines)  # to the stream's end
    lasted = time.monotonic() - opened
    assert STREAM_SECONDS <= lasted < STREAM_SECONDS + 20, lasted
    assert [event["sku"] for _, event in part_one] == [first]
    stock(http, app, second, 2)
    with open_stream(http, app, **{"Last-Event-ID": part_one[-1][0]}) as lines:
        part_two = sse_lines(lines)
    streamed = [key_of(event) for _, event in part_one + part_two]
    paged, _ = read_from(http, app, start, limit=1000)
    assert streamed == [key_of(event) for event in paged]
    assert [event["sku"] for event in paged] == [first, second]


def sse_lines(lines: Iterator[str]) -> list[tuple[str, Event]]:
    """(id, event) of a stream's lines, until it ends."""
    found: list[tuple[str, Event]] = []
    event_id, data = None, None
    for line in lines:
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and event_id and data:
            found.append((event_id, data))
            event_id, data = None, None
    return found
