"""`/v1/webhooks` over real HTTP: register, list, delete, dead letters; bad input refused; a
keyed retry replayed."""

import uuid
from typing import Any

import httpx
import pytest
import ray

from inventory_actors.feed.webhook_dispatcher import DISPATCHER_NAME
from tests.conftest import wait_for
from tests.http.conftest import HttpApp, assert_problem, bearer

pytestmark = pytest.mark.ray

SECRET = "sixteen-chars-at-least"


def test_register_list_and_delete(http_app: HttpApp, http: httpx.Client) -> None:
    admin = bearer(http_app.admin_key)
    body = {"url": "http://127.0.0.1:9/hook", "events": ["stock.low"], "secret": SECRET}
    answer = http.post("/v1/webhooks", json=body, headers=admin)
    assert answer.status_code == 201, answer.text
    created = answer.json()
    assert created["url"] == body["url"] and created["events"] == ["stock.low"]
    assert "secret" not in created and SECRET not in answer.text
    listed = http.get("/v1/webhooks", headers=admin).json()["webhooks"]
    assert created["id"] in [hook["id"] for hook in listed]
    letters = http.get(f"/v1/webhooks/{created['id']}/dead-letters", headers=admin)
    assert letters.status_code == 200 and letters.json() == {"dead_letters": []}
    assert http.delete(f"/v1/webhooks/{created['id']}", headers=admin).status_code == 204
    assert_problem(http.delete(f"/v1/webhooks/{created['id']}", headers=admin), 404, "not-found")
    missing = http.get(f"/v1/webhooks/{created['id']}/dead-letters", headers=admin)
    assert_problem(missing, 404, "not-found")


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://example.com/x", "secret": SECRET},
        {"url": "http://example.com/" + "x" * 2_100, "secret": SECRET},
        {"url": "http://example.com/x", "events": ["stock.stolen"], "secret": SECRET},
        {"url": "http://example.com/x", "secret": "short"},
        {"url": "http://example.com/x"},
        {"url": "http://example.com/x", "secret": SECRET, "extra": 1},
    ],
    ids=["scheme", "long url", "unknown event", "short secret", "no secret", "extra field"],
)
def test_bad_subscriptions_are_422(
    http_app: HttpApp, http: httpx.Client, body: dict[str, object]
) -> None:
    answer = http.post("/v1/webhooks", json=body, headers=bearer(http_app.admin_key))
    assert_problem(answer, 422, "validation-error")


def test_webhooks_need_the_admin_role(http_app: HttpApp, http: httpx.Client) -> None:
    body = {"url": "http://127.0.0.1:9/hook", "secret": SECRET}
    writer = bearer(http_app.writer_key)
    assert_problem(http.post("/v1/webhooks", json=body, headers=writer), 403, "forbidden")
    assert_problem(http.get("/v1/webhooks", headers=writer), 403, "forbidden")


def test_a_keyed_retry_replays_the_subscription_also_after_a_dispatcher_restart(
    http_app: HttpApp, http: httpx.Client
) -> None:
    """A retry (as after a 503) with the same Idempotency-Key and body gets the first answer,
    marked replayed, and adds no second subscription; another body with that key is 422."""
    admin = bearer(http_app.admin_key)
    url = f"http://127.0.0.1:9/{uuid.uuid4().hex}"
    body = {"url": url, "events": ["stock.low"], "secret": SECRET}
    keyed = {**admin, "Idempotency-Key": f"hook-{uuid.uuid4().hex}"}

    def ours() -> list[dict[str, Any]]:
        listed = http.get("/v1/webhooks", headers=admin)
        assert listed.status_code == 200, listed.text
        return [hook for hook in listed.json()["webhooks"] if hook["url"] == url]

    first = http.post("/v1/webhooks", json=body, headers=keyed)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = http.post("/v1/webhooks", json=body, headers=keyed)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    other = http.post("/v1/webhooks", json={**body, "events": []}, headers=keyed)
    assert_problem(other, 422, "idempotency-key-reused")
    assert [hook["id"] for hook in ours()] == [first.json()["id"]]
    # The key is on disk: a restarted dispatcher (Ray starts it again) still replays.
    ray.kill(ray.get_actor(DISPATCHER_NAME, namespace=http_app.namespace), no_restart=False)

    def replayed() -> httpx.Response | None:
        answer = http.post("/v1/webhooks", json=body, headers=keyed)
        return answer if answer.status_code != 503 else None  # restarting: retry, same key

    after = wait_for(replayed, 60, "the restarted dispatcher")
    assert after.status_code == 201, after.text
    assert after.headers["idempotent-replayed"] == "true"
    assert after.json() == first.json()
    assert [hook["id"] for hook in ours()] == [first.json()["id"]]
    # Without a key, each request is a new subscription (the contract's default).
    plain = http.post("/v1/webhooks", json=body, headers=admin)
    assert plain.status_code == 201 and plain.json()["id"] != first.json()["id"]
    for hook in ours():
        assert http.delete(f"/v1/webhooks/{hook['id']}", headers=admin).status_code == 204
