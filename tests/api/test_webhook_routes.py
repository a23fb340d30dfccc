"""A dataset's webhook over HTTP: set (its secret shown once), read, replaced, removed; its
deliveries listed and retried; a test call signed and received by a real local endpoint; and
nobody but the owner reaches any of it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from core.services import webhook_signing, webhooks
from core.store.models import utcnow

SECRET = "a-secret-of-the-data-ops-team"


@pytest.fixture
def dataset_id(client, alice) -> int:
    response = client.post("/datasets", json={"builtin": "digits", "name": "hooked"}, headers=alice)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_a_webhook_is_set_read_replaced_and_removed_showing_its_secret_only_once(client, alice, dataset_id):
    path = f"/datasets/{dataset_id}/webhook"
    created = client.put(path, json={"url": "https://example.org/hooks/lilaw", "secret": SECRET}, headers=alice)
    assert created.status_code == 200, created.text
    body = created.json()
    assert (body["dataset_id"], body["url"], body["secret"]) == (dataset_id, "https://example.org/hooks/lilaw", SECRET)
    assert isinstance(body["id"], int) and body["created_at"]

    read = client.get(path, headers=alice)
    assert read.status_code == 200
    assert read.json() == {key: body[key] for key in ("id", "dataset_id", "url", "created_at")}
    assert SECRET not in read.text

    replaced = client.put(path, json={"url": "https://example.org/hooks/v2"}, headers=alice).json()
    assert len(replaced["secret"]) >= 32 and replaced["secret"] != SECRET  # made for us
    assert (replaced["id"], replaced["url"]) == (body["id"], "https://example.org/hooks/v2")
    assert replaced["secret"] not in client.get(path, headers=alice).text

    assert client.delete(path, headers=alice).status_code == 204
    gone = client.get(path, headers=alice)
    assert gone.status_code == 404 and "has no webhook" in gone.json()["detail"]
    assert client.delete(path, headers=alice).status_code == 404


def test_invalid_webhooks_are_refused_with_a_clear_message(client, alice, dataset_id):
    path = f"/datasets/{dataset_id}/webhook"
    for url in ("not a url", "ftp://example.org/hook", "https:///no-host", "javascript:alert(1)"):
        refused = client.put(path, json={"url": url}, headers=alice)
        assert refused.status_code == 422, url
        assert "invalid webhook URL" in refused.json()["detail"] and "http(s)://host" in refused.json()["detail"]
    short = client.put(path, json={"url": "https://example.org/hook", "secret": "short"}, headers=alice)
    assert short.status_code == 422 and short.json()["detail"].startswith("secret:")
    assert "16 characters" in short.json()["detail"]
    unknown = client.put(path, json={"url": "https://example.org/hook", "events": ["all"]}, headers=alice)
    assert unknown.status_code == 422 and "events" in unknown.json()["detail"]
    assert client.get(path, headers=alice).status_code == 404  # nothing was set
    assert client.post(f"{path}/test", headers=alice).status_code == 404
    missing = client.put("/datasets/999999/webhook", json={"url": "https://example.org/hook"}, headers=alice)
    assert missing.status_code == 404


def test_nobody_else_reaches_the_webhook_or_its_deliveries(client, alice, bob, dataset_id):
    path = f"/datasets/{dataset_id}/webhook"
    client.put(path, json={"url": "https://example.org/hooks/lilaw", "secret": SECRET}, headers=alice)
    ping = client.post(f"{path}/test", headers=alice).json()

    for method, url in (
        ("GET", path), ("PUT", path), ("DELETE", path), ("POST", f"{path}/test"), ("GET", f"{path}/deliveries"),
        ("POST", f"{path}/deliveries/{ping['id']}/retry"),
    ):  # fmt: skip
        answer = client.request(method, url, json={"url": "https://bob.example/steal"}, headers=bob)
        assert answer.status_code == 404, (method, url)
        assert SECRET not in answer.text
    assert client.get(path).status_code == 401
    assert client.get(path, headers=alice).json()["url"] == "https://example.org/hooks/lilaw"
    assert [delivery["id"] for delivery in client.get(f"{path}/deliveries", headers=alice).json()] == [ping["id"]]


def test_a_test_call_is_signed_delivered_and_listed(client, alice, dataset_id, sessions, receiver_for):
    receiver = receiver_for([200])
    path = f"/datasets/{dataset_id}/webhook"
    secret = client.put(path, json={"url": receiver.url}, headers=alice).json()["secret"]

    queued = client.post(f"{path}/test", headers=alice)
    assert queued.status_code == 201
    ping = queued.json()
    assert (ping["event"], ping["status"], ping["attempts"], ping["job_id"]) == ("ping", "pending", 0, None)
    assert receiver.calls == []  # the worker's pass makes the call

    [attempt] = webhooks.deliver_due(sessions, allow_private_hosts=True)

    assert attempt.delivery_id == ping["id"]
    [call] = receiver.calls
    assert json.loads(call["body"]) == {"event": "ping", "dataset_id": dataset_id}
    headers = {name.lower(): value for name, value in call["headers"].items()}
    assert (headers["x-lilaw-event"], headers["x-lilaw-delivery"]) == ("ping", str(ping["id"]))
    assert webhook_signing.verify_signature(
        secret, call["body"], headers["x-lilaw-timestamp"], headers["x-lilaw-signature"], now=utcnow()
    )
    [delivery] = client.get(f"{path}/deliveries", headers=alice).json()
    assert delivery["id"] == ping["id"]
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("delivered", 0, 200)
    assert (delivery["last_error"], delivery["next_attempt_at"]) == (None, None) and delivery["delivered_at"]

    again = client.post(f"{path}/deliveries/{ping['id']}/retry", headers=alice)
    assert again.status_code == 409 and "delivered already" in again.json()["detail"]


def test_a_failed_delivery_is_listed_with_its_error_and_retried(client, alice, dataset_id, sessions, receiver_for):
    receiver = receiver_for([500] * 2 * webhooks.MAX_ATTEMPTS + [204])
    path = f"/datasets/{dataset_id}/webhook"
    client.put(path, json={"url": receiver.url, "secret": SECRET}, headers=alice)
    first = client.post(f"{path}/test", headers=alice).json()
    second = client.post(f"{path}/test", headers=alice).json()
    now = utcnow()
    for _ in range(webhooks.MAX_ATTEMPTS):  # time moves on by hand to each retry
        attempts = webhooks.deliver_due(sessions, allow_private_hosts=True, now=now)
        assert {attempt.delivery_id for attempt in attempts} == {first["id"], second["id"]}
        now += webhooks.backoff(attempts[0].attempts)

    listed = client.get(f"{path}/deliveries", headers=alice).json()
    assert [delivery["id"] for delivery in listed] == [second["id"], first["id"]]  # newest first
    assert [delivery["id"] for delivery in client.get(f"{path}/deliveries?limit=1", headers=alice).json()] == [
        second["id"]
    ]
    assert client.get(f"{path}/deliveries?limit=0", headers=alice).status_code == 422
    failed = listed[1]
    assert (failed["status"], failed["attempts"], failed["last_status_code"]) == ("failed", webhooks.MAX_ATTEMPTS, 500)
    assert "500" in failed["last_error"] and failed["next_attempt_at"] is None

    retried = client.post(f"{path}/deliveries/{first['id']}/retry", headers=alice)
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"], retried.json()["last_error"]) == (
        "pending", 0, failed["last_error"],
    )  # fmt: skip
    [attempt] = webhooks.deliver_due(sessions, allow_private_hosts=True, now=utcnow() + timedelta(seconds=1))
    assert attempt.delivery_id == first["id"]
    listed = client.get(f"{path}/deliveries", headers=alice).json()
    statuses = {delivery["id"]: delivery["status"] for delivery in listed}
    assert statuses == {first["id"]: "delivered", second["id"]: "failed"}
    assert len(receiver.calls) == 2 * webhooks.MAX_ATTEMPTS + 1
    assert client.post(f"{path}/deliveries/999999/retry", headers=alice).status_code == 404


def test_a_service_refuses_webhooks_into_its_own_network_by_default(settings, alice, dataset_id):
    strict = create_app(settings.model_copy(update={"webhook_allow_private_hosts": False}))
    with TestClient(strict) as client:
        response = client.put(f"/datasets/{dataset_id}/webhook", json={"url": "http://127.0.0.1:8000/h"}, headers=alice)
    assert response.status_code == 422
    assert "127.0.0.1 is not a public address" in response.json()["detail"]
