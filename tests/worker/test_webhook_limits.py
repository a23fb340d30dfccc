"""The per-owner rate limit of webhook calls and the per-call deadline, on real databases with a
real HTTP receiver (time moved by hand, as in test_webhooks.py: it starts in 2002 here, apart from
the deliveries that other tests leave pending)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from core.services import webhooks
from core.store import session_scope
from core.store.models import Dataset, DeliveryStatus, Owner, WebhookDelivery
from core.webhook_limits import MAX_CALLS_PER_OWNER_PER_WINDOW, RATE_WINDOW_S

T0 = datetime(2002, 3, 4, 5, 6, 7, tzinfo=UTC)
SECRET = "a-secret-of-the-data-ops-team"


@pytest.fixture
def new_dataset(sessions):
    """`new_dataset(owner_id=None)`: a dataset with a webhook-less start, of a new owner or the
    given one; returns (dataset id, owner id). Owners are deleted afterwards."""
    owners: list[int] = []

    def make(owner_id: int | None = None) -> tuple[int, int]:
        with session_scope(sessions) as session:
            owner = session.get(Owner, owner_id) if owner_id else Owner(name=f"limits-{uuid.uuid4().hex[:8]}")
            dataset = Dataset(owner=owner, name=f"d-{uuid.uuid4().hex[:6]}")
            session.add(dataset)
            session.flush()
            if owner_id is None:
                owners.append(dataset.owner_id)
            return dataset.id, dataset.owner_id

    yield make
    with session_scope(sessions) as session:
        for owner_id in owners:
            session.delete(session.get(Owner, owner_id))


def pings(sessions, dataset_id: int, url: str, count: int) -> list[int]:
    with session_scope(sessions) as session:
        webhooks.set_webhook(session, dataset_id, url, SECRET, allow_private_hosts=True)
        payload = {"event": "ping", "dataset_id": dataset_id}
        return [webhooks.enqueue_delivery(session, dataset_id, None, "ping", payload, now=T0).id for _ in range(count)]


def deliver(sessions, at: datetime) -> list[webhooks.Attempt]:
    return webhooks.deliver_due(sessions, now=at, allow_private_hosts=True)


def deliveries(sessions, ids: list[int]) -> list[WebhookDelivery]:
    with sessions() as session:
        return list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)).order_by(WebhookDelivery.id)))


def test_an_owner_past_its_rate_limit_is_deferred_not_failed_and_others_are_not_held_up(
    sessions, new_dataset, receiver_for
):
    receiver = receiver_for([200])
    first, owner = new_dataset()
    second, _ = new_dataset(owner)  # the limit is the owner's, over all of its datasets
    other, _ = new_dataset()
    extra = 3
    mine = pings(sessions, first, receiver.url, MAX_CALLS_PER_OWNER_PER_WINDOW) + pings(sessions, second, receiver.url, extra)
    theirs = pings(sessions, other, receiver.url, 1)

    made = deliver(sessions, T0)

    assert sorted(a.delivery_id for a in made) == sorted(mine[:MAX_CALLS_PER_OWNER_PER_WINDOW] + theirs)
    assert len(receiver.calls) == MAX_CALLS_PER_OWNER_PER_WINDOW + 1
    deferred = deliveries(sessions, mine[MAX_CALLS_PER_OWNER_PER_WINDOW:])
    window_ends = T0 + timedelta(seconds=RATE_WINDOW_S)
    assert [(d.status, d.attempts, d.next_attempt_at) for d in deferred] == [(DeliveryStatus.PENDING, 0, window_ends)] * extra

    assert deliver(sessions, window_ends - timedelta(seconds=1)) == []  # still inside the window
    later = deliver(sessions, window_ends)
    assert sorted(a.delivery_id for a in later) == mine[MAX_CALLS_PER_OWNER_PER_WINDOW:]
    assert {d.status for d in deliveries(sessions, mine + theirs)} == {DeliveryStatus.DELIVERED}


def test_a_call_is_cut_off_at_its_overall_deadline(sessions, new_dataset, receiver_for, monkeypatch):
    """The receiver answers after 2 s, within the per-step timeout (10 s), but past the call's
    deadline: the worker moves on, and the attempt is failed and retried later."""
    monkeypatch.setattr(webhooks, "DELIVERY_TIMEOUT_S", 0.5)
    receiver = receiver_for([200], delay_s=2.0)
    dataset_id, _ = new_dataset()
    [delivery_id] = pings(sessions, dataset_id, receiver.url, 1)

    started = time.monotonic()
    [attempt] = deliver(sessions, T0)

    assert time.monotonic() - started < 1.5
    assert (attempt.status, attempt.attempts, attempt.status_code) == (DeliveryStatus.PENDING, 1, None)
    assert attempt.error == "no complete answer within 0.5 s"
    assert deliveries(sessions, [delivery_id])[0].next_attempt_at == T0 + webhooks.backoff(1)
