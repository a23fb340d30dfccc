"""Webhook deliveries on real databases to a real HTTP receiver on a local port: signed calls,
retries once their backoff has passed (time is moved by hand, nothing sleeps for it), giving up
after the last attempt, and two workers delivering at once.

Time starts in 2001 here, so that the deliveries other tests leave pending in the shared
database are never due in these tests (and these tests never touch them)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.services import ConflictError, InvalidParameterError, NotFoundError, webhook_signing, webhooks
from core.store import session_scope
from core.store.models import Dataset, DatasetWebhook, DeliveryStatus, Owner, WebhookDelivery

SECRET = "a-secret-of-the-data-ops-team"
T0 = datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC)
PAYLOAD = {"event": "reaudit.completed", "job_id": None, "counts": {"new_samples": 3, "removed": 0}, "note": "ü"}


@pytest.fixture
def dataset_id(sessions: sessionmaker[Session]) -> Iterator[int]:
    """A dataset of a new owner; deleted afterwards with its webhook and deliveries."""
    with session_scope(sessions) as session:
        dataset = Dataset(owner=Owner(name=f"webhook-owner-{uuid.uuid4().hex[:8]}"), name="digits")
        session.add(dataset)
        session.flush()
        dataset_id, owner_id = dataset.id, dataset.owner_id
    yield dataset_id
    with session_scope(sessions) as session:
        session.delete(session.get(Owner, owner_id))


def closed_port_url() -> str:
    """A URL on which nothing listens: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def hook(sessions, dataset_id: int, url: str, secret: str | None = SECRET) -> str:
    with session_scope(sessions) as session:
        return webhooks.set_webhook(session, dataset_id, url, secret, allow_private_hosts=True)[1]


def enqueue(sessions, dataset_id: int, payload: dict = PAYLOAD, *, now: datetime = T0) -> int:
    with session_scope(sessions) as session:
        return webhooks.enqueue_delivery(session, dataset_id, None, "reaudit.completed", payload, now=now).id


def delivery(sessions, delivery_id: int) -> WebhookDelivery:
    with sessions() as session:
        return session.get(WebhookDelivery, delivery_id)


def deliver(sessions, at: datetime) -> list[webhooks.Attempt]:
    return webhooks.deliver_due(sessions, now=at, allow_private_hosts=True)  # the receivers are on loopback


def test_the_receiver_gets_the_payload_signed_with_the_secret(sessions, dataset_id, receiver_for):
    receiver = receiver_for([200])
    hook(sessions, dataset_id, receiver.url)
    delivery_id = enqueue(sessions, dataset_id)

    [attempt] = deliver(sessions, T0)

    assert attempt == webhooks.Attempt(delivery_id, DeliveryStatus.DELIVERED, 0, 200, None)
    [call] = receiver.calls
    headers = {name.lower(): value for name, value in call["headers"].items()}
    assert (call["method"], call["path"]) == ("POST", "/hooks/lilaw?team=ops")
    assert headers["content-type"] == "application/json"
    assert (headers["x-lilaw-event"], headers["x-lilaw-delivery"]) == ("reaudit.completed", str(delivery_id))
    assert headers["x-lilaw-timestamp"] == str(int(T0.timestamp()))
    assert json.loads(call["body"]) == PAYLOAD
    assert call["body"] == webhook_signing.canonical_body(PAYLOAD)

    timestamp, signature = headers["x-lilaw-timestamp"], headers["x-lilaw-signature"]
    # The scheme the README gives receivers: HMAC-SHA256 of "{timestamp}." + body.
    digest = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + call["body"], hashlib.sha256).hexdigest()
    assert signature == f"sha256={digest}"
    assert webhook_signing.verify_signature(SECRET, call["body"], timestamp, signature, now=T0 + timedelta(seconds=299))
    assert not webhook_signing.verify_signature("another-secret-entirely", call["body"], timestamp, signature, now=T0)
    tampered = call["body"].replace(b'"new_samples":3', b'"new_samples":4')
    assert tampered != call["body"]
    assert not webhook_signing.verify_signature(SECRET, tampered, timestamp, signature, now=T0)
    assert not webhook_signing.verify_signature(SECRET, call["body"], str(int(timestamp) + 1), signature, now=T0)
    assert not webhook_signing.verify_signature(SECRET, call["body"], timestamp, signature, now=T0 + timedelta(seconds=301))
    assert not webhook_signing.verify_signature(SECRET, call["body"], timestamp, signature, now=T0 - timedelta(seconds=301))
    malformed = ((None, signature), (timestamp, None), ("soon", signature), (timestamp, "sha256=é"))
    for bad_timestamp, bad_signature in malformed:
        assert not webhook_signing.verify_signature(SECRET, call["body"], bad_timestamp, bad_signature, now=T0)

    sent = delivery(sessions, delivery_id)
    assert (sent.status, sent.attempts, sent.last_status_code, sent.last_error) == ("delivered", 0, 200, None)
    assert (sent.delivered_at, sent.next_attempt_at) == (T0, None)

    # Delivered is final: no later pass sends it again.
    assert deliver(sessions, T0 + timedelta(days=30)) == []
    assert len(receiver.calls) == 1


def test_a_failed_call_is_retried_only_once_its_backoff_has_passed(sessions, dataset_id, receiver_for, caplog):
    receiver = receiver_for([500, 200])
    hook(sessions, dataset_id, receiver.url)
    delivery_id = enqueue(sessions, dataset_id)

    with caplog.at_level(logging.WARNING, logger="core.services.webhooks"):
        [failed] = deliver(sessions, T0)
    assert (failed.status, failed.attempts, failed.status_code) == (DeliveryStatus.PENDING, 1, 500)
    assert "500" in failed.error and "receiver says no" in failed.error
    [logged] = [record.getMessage() for record in caplog.records if f"delivery {delivery_id} " in record.getMessage()]
    assert "attempt 1 of 8 failed" in logged and "500" in logged
    assert "/hooks/lilaw" not in logged  # the URL's path and query may hold a token: only the origin is logged
    pending = delivery(sessions, delivery_id)
    assert (pending.status, pending.attempts, pending.last_status_code) == ("pending", 1, 500)
    assert pending.next_attempt_at == T0 + timedelta(seconds=30)

    assert deliver(sessions, T0 + timedelta(seconds=10)) == []
    assert len(receiver.calls) == 1

    [retried] = deliver(sessions, T0 + timedelta(seconds=31))
    assert (retried.status, retried.status_code, retried.error) == (DeliveryStatus.DELIVERED, 200, None)
    first, second = receiver.calls
    assert first["body"] == second["body"]
    assert first["headers"]["X-LiLAW-Delivery"] == second["headers"]["X-LiLAW-Delivery"] == str(delivery_id)
    assert second["headers"]["X-LiLAW-Timestamp"] == str(int(T0.timestamp()) + 31)
    assert webhook_signing.verify_signature(
        SECRET, second["body"], second["headers"]["X-LiLAW-Timestamp"], second["headers"]["X-LiLAW-Signature"],
        now=T0 + timedelta(seconds=31),
    )  # fmt: skip
    done = delivery(sessions, delivery_id)
    assert (done.status, done.attempts, done.last_status_code, done.last_error) == ("delivered", 1, 200, None)
    assert done.delivered_at == T0 + timedelta(seconds=31)


def test_a_refused_connection_is_a_failed_attempt_with_a_readable_error(sessions, dataset_id):
    hook(sessions, dataset_id, closed_port_url())
    delivery_id = enqueue(sessions, dataset_id)

    [attempt] = deliver(sessions, T0)

    assert (attempt.status, attempt.attempts, attempt.status_code) == (DeliveryStatus.PENDING, 1, None)
    failed = delivery(sessions, delivery_id)
    assert failed.last_status_code is None
    assert failed.last_error.startswith("could not connect") and "refused" in failed.last_error.lower()
    assert failed.next_attempt_at == T0 + timedelta(seconds=30)


def test_after_the_last_attempt_a_delivery_is_failed_and_never_sent_again(sessions, dataset_id, receiver_for):
    receiver = receiver_for([503])
    hook(sessions, dataset_id, receiver.url)
    delivery_id = enqueue(sessions, dataset_id)

    now, waits = T0, []
    for attempt_number in range(1, webhooks.MAX_ATTEMPTS + 1):
        assert deliver(sessions, now - timedelta(seconds=1)) == []  # not due a second early
        [attempt] = deliver(sessions, now)
        assert (attempt.attempts, attempt.status_code) == (attempt_number, 503)
        row = delivery(sessions, delivery_id)
        if attempt_number < webhooks.MAX_ATTEMPTS:
            assert row.status == "pending"
            waits.append(row.next_attempt_at - now)
            now = row.next_attempt_at
    assert waits == [timedelta(seconds=30 * 2**i) for i in range(webhooks.MAX_ATTEMPTS - 1)]
    assert webhooks.backoff(8) == webhooks.backoff(100) == timedelta(hours=1)

    failed = delivery(sessions, delivery_id)
    assert (failed.status, failed.attempts, failed.next_attempt_at) == ("failed", webhooks.MAX_ATTEMPTS, None)
    assert "503" in failed.last_error
    assert deliver(sessions, now + timedelta(days=365)) == []
    assert len(receiver.calls) == webhooks.MAX_ATTEMPTS


def test_a_redirect_is_not_followed(sessions, dataset_id, receiver_for):
    target = receiver_for([200])
    receiver = receiver_for([302], headers={"Location": target.url})
    hook(sessions, dataset_id, receiver.url)
    delivery_id = enqueue(sessions, dataset_id)

    [attempt] = deliver(sessions, T0)

    assert (attempt.status, attempt.status_code) == (DeliveryStatus.PENDING, 302)
    assert "redirect" in attempt.error and "not followed" in attempt.error
    assert (len(receiver.calls), target.calls) == (1, [])
    assert delivery(sessions, delivery_id).attempts == 1


def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(sessions, dataset_id, receiver_for, monkeypatch):
    monkeypatch.setattr(webhooks, "TIMEOUT_S", 0.2)
    receiver = receiver_for([200], delay_s=1.0)
    hook(sessions, dataset_id, receiver.url)
    delivery_id = enqueue(sessions, dataset_id)

    started = time.monotonic()
    [attempt] = deliver(sessions, T0)

    assert time.monotonic() - started < 0.9
    assert (attempt.status, attempt.status_code) == (DeliveryStatus.PENDING, None)
    assert attempt.error.startswith("no answer within 0.2 s")
    assert delivery(sessions, delivery_id).attempts == 1


def test_each_attempt_uses_the_webhooks_current_url_and_secret(sessions, dataset_id, receiver_for):
    old, new = receiver_for([500]), receiver_for([200])
    hook(sessions, dataset_id, old.url)
    delivery_id = enqueue(sessions, dataset_id)
    deliver(sessions, T0)
    new_secret = hook(sessions, dataset_id, new.url, secret=None)  # replaced: a random secret
    assert len(new_secret) >= 32 and new_secret != SECRET

    [attempt] = deliver(sessions, T0 + timedelta(seconds=30))

    assert attempt.status is DeliveryStatus.DELIVERED
    assert len(old.calls) == 1
    [call] = new.calls
    timestamp, signature = call["headers"]["X-LiLAW-Timestamp"], call["headers"]["X-LiLAW-Signature"]
    now = T0 + timedelta(seconds=30)
    assert webhook_signing.verify_signature(new_secret, call["body"], timestamp, signature, now=now)
    assert not webhook_signing.verify_signature(SECRET, call["body"], timestamp, signature, now=now)
    assert delivery(sessions, delivery_id).url == new.url
    with sessions() as session:  # replaced, not added
        [webhook] = session.scalars(select(DatasetWebhook).where(DatasetWebhook.dataset_id == dataset_id))
    assert webhook.url == new.url


def test_a_delivery_whose_webhook_was_removed_fails_without_a_call(sessions, dataset_id, receiver_for):
    receiver = receiver_for([200])
    hook(sessions, dataset_id, receiver.url)
    delivery_id = enqueue(sessions, dataset_id)
    with session_scope(sessions) as session:
        webhooks.delete_webhook(session, dataset_id)

    [attempt] = deliver(sessions, T0)

    assert (attempt.status, attempt.error) == (DeliveryStatus.FAILED, webhooks.WEBHOOK_REMOVED)
    assert receiver.calls == []
    failed = delivery(sessions, delivery_id)
    assert (failed.status, failed.last_error) == ("failed", "the dataset's webhook was removed")
    with session_scope(sessions) as session, pytest.raises(ConflictError, match="set one first"):
        webhooks.retry_delivery(session, dataset_id, delivery_id, now=T0)


def test_two_workers_at_once_send_each_due_delivery_once(sessions, dataset_id, receiver_for):
    receiver = receiver_for([200], delay_s=0.15)
    hook(sessions, dataset_id, receiver.url)
    delivery_ids = {enqueue(sessions, dataset_id) for _ in range(3)}
    start = threading.Barrier(2)

    def worker() -> list[webhooks.Attempt]:
        start.wait()
        return deliver(sessions, T0)

    with ThreadPoolExecutor(2) as pool:
        passes = [pool.submit(worker) for _ in range(2)]
    # result() re-raises what a worker raised.
    attempted = [attempt.delivery_id for done in passes for attempt in done.result()]
    assert sorted(attempted) == sorted(delivery_ids)
    sent = sorted(int(call["headers"]["X-LiLAW-Delivery"]) for call in receiver.calls)
    assert sent == sorted(delivery_ids)
    with sessions() as session:
        statuses = session.scalars(select(WebhookDelivery.status).where(WebhookDelivery.id.in_(delivery_ids))).all()
    assert set(statuses) == {"delivered"}


def test_without_a_webhook_nothing_is_queued(sessions, dataset_id):
    with session_scope(sessions) as session:
        assert webhooks.enqueue_delivery(session, dataset_id, None, "reaudit.completed", PAYLOAD, now=T0) is None
        with pytest.raises(NotFoundError, match="has no webhook"):
            webhooks.get_webhook(session, dataset_id)
    assert deliver(sessions, T0) == []


def test_retrying_a_failed_delivery_starts_its_attempts_afresh(sessions, dataset_id, receiver_for):
    receiver = receiver_for([503] * webhooks.MAX_ATTEMPTS + [200])
    hook(sessions, dataset_id, receiver.url)
    delivery_id = enqueue(sessions, dataset_id)
    now = T0
    for _ in range(webhooks.MAX_ATTEMPTS):
        [attempt] = deliver(sessions, now)
        now += webhooks.backoff(attempt.attempts)
    assert delivery(sessions, delivery_id).status == "failed"

    with session_scope(sessions) as session:
        retried = webhooks.retry_delivery(session, dataset_id, delivery_id, now=now)
        assert (retried.status, retried.attempts, retried.next_attempt_at) == ("pending", 0, now)
    [attempt] = deliver(sessions, now)
    assert attempt.status is DeliveryStatus.DELIVERED
    assert len(receiver.calls) == webhooks.MAX_ATTEMPTS + 1

    with session_scope(sessions) as session:
        with pytest.raises(ConflictError, match="delivered already"):
            webhooks.retry_delivery(session, dataset_id, delivery_id, now=now)
        with pytest.raises(NotFoundError):
            webhooks.retry_delivery(session, dataset_id + 10_000, delivery_id, now=now)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.org/hook", "example.org/hook", "http://", "https:///hook", "http://exa mple.org/", "http://[::1/",
     "http://example.org:99999/", "javascript:alert(1)", "https://example.org/" + "x" * 2048],
)  # fmt: skip
def test_a_webhook_needs_an_http_url(sessions, dataset_id, url):
    with session_scope(sessions) as session, pytest.raises(InvalidParameterError, match="invalid webhook URL"):
        webhooks.set_webhook(session, dataset_id, url)


def test_a_given_secret_must_be_long_enough(sessions, dataset_id):
    with session_scope(sessions) as session:
        with pytest.raises(InvalidParameterError, match="at least|16 to 256"):
            webhooks.set_webhook(session, dataset_id, "https://example.org/hook", "short")
        webhook, secret = webhooks.set_webhook(session, dataset_id, "https://example.org/hook", "s" * 16)
        assert (webhook.url, webhook.secret, secret) == ("https://example.org/hook", "s" * 16, "s" * 16)
        webhooks.delete_webhook(session, dataset_id)
        with pytest.raises(NotFoundError):
            webhooks.delete_webhook(session, dataset_id)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:192.168.0.1]/hook",
    ],
)
def test_a_webhook_to_a_non_public_address_is_refused_by_default(sessions, dataset_id, url):
    with session_scope(sessions) as session, pytest.raises(InvalidParameterError, match="is not a public address"):
        webhooks.set_webhook(session, dataset_id, url)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_call_to_a_host_that_resolves_to_a_non_public_address_is_not_made(sessions, dataset_id, receiver_for, host):
    receiver = receiver_for([200])
    hook(sessions, dataset_id, receiver.url.replace("127.0.0.1", host))  # allowed when it was set...
    enqueue(sessions, dataset_id)

    [attempt] = webhooks.deliver_due(sessions, now=T0)  # ...but not by this worker
    assert (attempt.status, attempt.attempts, attempt.status_code) == (DeliveryStatus.PENDING, 1, None)
    assert attempt.error.startswith(f"not called: {host}") and "is not a public address" in attempt.error
    assert receiver.calls == []
