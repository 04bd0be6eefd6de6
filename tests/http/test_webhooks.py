"""`/v1/webhooks` over real HTTP: register, list, delete, dead letters; bad input refused."""

import httpx
import pytest

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
