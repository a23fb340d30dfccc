"""Per-dataset webhooks: signed calls when a re-audit of the dataset finishes, retried with backoff.

For receivers. Each call is a `POST` to the webhook's URL whose body is the event as canonical JSON
(keys sorted, no spaces: `webhook_signing.canonical_body`), with the headers
- `Content-Type: application/json`;
- `X-LiLAW-Event`: what happened, e.g. `reaudit.completed`, or `ping` for a test call;
- `X-LiLAW-Delivery`: the delivery id. A retry of a call keeps it (and the body), so a receiver
  that has seen it already can answer 2xx and drop the repeat: calls come at least once;
- `X-LiLAW-Timestamp`: unix seconds of the attempt;
- `X-LiLAW-Signature`: `sha256=` and the hex HMAC-SHA256, keyed with the webhook's secret, of
  the timestamp, a dot and the raw body: `f"{timestamp}.".encode() + body`.
Check a call with `core.services.webhook_signing.verify_signature(secret, body, timestamp,
signature, now=...)` before reading the body (or reimplement it: compare in constant time, and
reject a timestamp more than 5 minutes away from your clock, so that a recorded call cannot be
replayed later).

Any 2xx answer counts as delivered. Anything else (another status, a redirect, which is not
followed, no answer within 10 s or a call over 15 s in all, a refused connection) is a failed
attempt, retried after 30 s,
1 min, 2 min, ... (doubling, at most an hour apart); after `MAX_ATTEMPTS` failed attempts the
delivery is failed, and the owner can send it again (`retry_delivery`). Each attempt goes to the
webhook's URL and is signed with its secret as they are at the time of the attempt.

Webhooks reach public addresses only, unless `Settings.webhook_allow_private_hosts`: a URL whose
host is, or resolves to, a non-public address is refused when it is set and at every attempt
(`core.services.webhook_addresses`).

Deliveries live in the database: the worker queues one in the transaction that finishes a
re-audit and `deliver_due` (the webhook worker's task, on its own queue) attempts the due ones, so
a restart loses nothing. Several workers may run `deliver_due` at once: each claims a delivery in
a short transaction of its own before calling, and no transaction stays open during an HTTP call.

Calls are rate-limited per owner (`core.webhook_limits`): at most MAX_CALLS_PER_OWNER_PER_WINDOW
in RATE_WINDOW_S over all of the owner's webhooks; a due delivery past that is deferred to when
the window has room, without counting as an attempt. The claim locks the owner's row, so
workers running at once keep to the limit together.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.services import ConflictError, InvalidParameterError, NotFoundError
from core.services.webhook_addresses import check_public_host, check_url, private_host_problem
from core.services.webhook_signing import canonical_body, sign
from core.store.db import session_scope
from core.store.models import Dataset, DatasetWebhook, DeliveryStatus, Owner, WebhookDelivery, utcnow
from core.webhook_limits import (
    DELIVERY_TIMEOUT_S,
    MAX_CALLS_PER_OWNER_PER_WINDOW,
    MAX_SECRET_LENGTH,
    MIN_SECRET_LENGTH,
    PASS_BUDGET_S,
    RATE_WINDOW_S,
)

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(seconds=30)
LONGEST_RETRY = timedelta(hours=1)
# While a worker calls, the delivery it claimed is not due for the others (well over the timeout).
CLAIM_LEASE = timedelta(minutes=2)
TIMEOUT_S = 10.0
MAX_ERROR_LENGTH = 500
_ANSWER_EXCERPT = 200  # characters of a failed answer's body kept in the error
WEBHOOK_REMOVED = "the dataset's webhook was removed"


@dataclass(frozen=True)
class Attempt:
    """One call made by `deliver_due`, and the delivery's state after it."""

    delivery_id: int
    status: DeliveryStatus
    attempts: int  # failed attempts so far
    status_code: int | None  # the receiver's answer; None when there was none
    error: str | None  # None when delivered


def set_webhook(
    session: Session, dataset_id: int, url: str, secret: str | None = None, *, allow_private_hosts: bool = False
) -> tuple[DatasetWebhook, str]:
    """Create or replace the dataset's webhook; returns it with its secret (a random one when
    none is given), which signs every call. Pending deliveries go to the new URL, signed with the
    new secret. A host that names a non-public address is refused unless `allow_private_hosts`."""
    check_url(url)
    if not allow_private_hosts:
        check_public_host(url)
    if secret is not None and not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH:
        raise InvalidParameterError(
            f"the webhook secret must have {MIN_SECRET_LENGTH} to {MAX_SECRET_LENGTH} characters, got {len(secret)}"
        )
    secret = secrets.token_urlsafe(32) if secret is None else secret
    webhook = _webhook(session, dataset_id)
    if webhook is None:
        webhook = DatasetWebhook(dataset_id=dataset_id)
        session.add(webhook)
    else:
        webhook.created_at = utcnow()  # when the URL and secret in use were set
    webhook.url, webhook.secret = url, secret
    session.flush()
    return webhook, secret


def get_webhook(session: Session, dataset_id: int) -> DatasetWebhook:
    webhook = _webhook(session, dataset_id)
    if webhook is None:
        raise NotFoundError(f"dataset {dataset_id} has no webhook")
    return webhook


def delete_webhook(session: Session, dataset_id: int) -> None:
    """Remove the dataset's webhook; its pending deliveries fail at their next attempt."""
    session.delete(get_webhook(session, dataset_id))
    session.flush()


def _webhook(session: Session, dataset_id: int) -> DatasetWebhook | None:
    return session.scalar(select(DatasetWebhook).where(DatasetWebhook.dataset_id == dataset_id))


def enqueue_delivery(
    session: Session, dataset_id: int, job_id: int | None, event: str, payload: dict[str, Any], *, now: datetime
) -> WebhookDelivery | None:
    """A pending delivery of `payload` to the dataset's webhook, due at `now`; None when the
    dataset has no webhook."""
    webhook = _webhook(session, dataset_id)
    if webhook is None:
        return None
    delivery = WebhookDelivery(
        dataset_id=dataset_id, job_id=job_id, event=event, url=webhook.url, payload=payload,
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now,
    )  # fmt: skip
    session.add(delivery)
    session.flush()
    return delivery


def list_deliveries(session: Session, dataset_id: int, limit: int = 50) -> list[WebhookDelivery]:
    """The dataset's deliveries, newest first."""
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.dataset_id == dataset_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    return list(session.scalars(statement))


def retry_delivery(session: Session, dataset_id: int, delivery_id: int, *, now: datetime) -> WebhookDelivery:
    """Make a failed (or pending) delivery due at `now` again, with a fresh count of attempts."""
    delivery = session.scalar(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id, WebhookDelivery.dataset_id == dataset_id)
    )
    if delivery is None:
        raise NotFoundError(f"dataset {dataset_id} has no webhook delivery {delivery_id}")
    if delivery.status is DeliveryStatus.DELIVERED:
        raise ConflictError(f"delivery {delivery_id} was delivered already")
    webhook = _webhook(session, dataset_id)
    if webhook is None:
        raise ConflictError(f"dataset {dataset_id} has no webhook to send delivery {delivery_id} to; set one first")
    delivery.status, delivery.attempts, delivery.next_attempt_at = DeliveryStatus.PENDING, 0, now
    delivery.url = webhook.url
    session.flush()
    return delivery


def backoff(failed_attempts: int) -> timedelta:
    """How long after its `failed_attempts`-th failed attempt a delivery is tried again."""
    if failed_attempts >= 20:  # 2**19 * 30 s is far past the cap already
        return LONGEST_RETRY
    return min(FIRST_RETRY * 2 ** max(failed_attempts - 1, 0), LONGEST_RETRY)


def deliver_due(
    sessions: sessionmaker[Session],
    *,
    now: datetime | None = None,
    client: httpx.Client | None = None,
    limit: int = 100,
    allow_private_hosts: bool = False,
    calls_per_window: int = MAX_CALLS_PER_OWNER_PER_WINDOW,
    budget_s: float = PASS_BUDGET_S,
) -> list[Attempt]:
    """Attempt the pending deliveries due at `now` (at most `limit`, the longest due first), one
    after the other, claiming none after `budget_s`; returns the attempts this call made
    (deliveries that another worker claimed first, or deferred by the owner's rate limit of
    `calls_per_window`, are left out). With `now` given, every attempt happens at `now` (tests
    move time by hand); else each attempt is stamped with the time it is made. A URL whose host
    resolves to a non-public address is a failed attempt, not called, unless `allow_private_hosts`."""
    clock: Callable[[], datetime] = utcnow if now is None else (lambda: now)
    with session_scope(sessions) as session:
        due = session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == DeliveryStatus.PENDING, WebhookDelivery.next_attempt_at <= clock())
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        ).all()
    if not due:
        return []
    own_client = client is None
    if client is None:
        client = httpx.Client(timeout=TIMEOUT_S, follow_redirects=False)
    started = time.monotonic()
    try:
        made = []
        for delivery_id in due:
            if time.monotonic() - started > budget_s:
                break
            attempt = _attempt(sessions, delivery_id, clock(), client, allow_private_hosts, calls_per_window)
            if attempt is not None:
                made.append(attempt)
        return made
    finally:
        if own_client:
            client.close()


@dataclass(frozen=True)
class _Call:
    event: str
    url: str
    secret: str | None  # None: the webhook was removed
    body: bytes


def _attempt(
    sessions: sessionmaker[Session],
    delivery_id: int,
    now: datetime,
    client: httpx.Client,
    allow_private_hosts: bool,
    calls_per_window: int,
) -> Attempt | None:
    call = _claim(sessions, delivery_id, now, calls_per_window)
    if call is None:
        return None
    refused = None if allow_private_hosts or call.secret is None else private_host_problem(call.url)
    if call.secret is None:
        status_code, error = None, WEBHOOK_REMOVED
    elif refused is not None:
        status_code, error = None, _short(f"not called: {refused}")
    else:
        status_code, error = _post_within(DELIVERY_TIMEOUT_S, client, call, delivery_id, now)
    with session_scope(sessions) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:  # its dataset was deleted during the call
            return None
        delivery.last_status_code, delivery.last_error = status_code, error
        if error is None:
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = DeliveryStatus.DELIVERED, now, None
        else:
            delivery.attempts += 1
            if delivery.attempts >= MAX_ATTEMPTS or call.secret is None:
                delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            else:
                delivery.next_attempt_at = now + backoff(delivery.attempts)
            logger.warning(
                "webhook delivery %s (%s) to %s: attempt %s of %s failed: %s; %s",
                delivery_id, call.event, _origin(call.url), delivery.attempts, MAX_ATTEMPTS, error,
                "giving up" if delivery.status is DeliveryStatus.FAILED else f"next at {delivery.next_attempt_at}",
            )  # fmt: skip
        return Attempt(delivery_id, delivery.status, delivery.attempts, status_code, error)


def _claim(sessions: sessionmaker[Session], delivery_id: int, now: datetime, calls_per_window: int) -> _Call | None:
    """Take the delivery if it is still due (no other worker took it) and its owner's rate limit
    allows a call: it stops being due for `CLAIM_LEASE`, long enough for the call; a worker that
    dies meanwhile leaves it due again once the lease has passed. Past the rate limit it is
    deferred instead. Returns what to send, or None when another worker took it or it was deferred."""
    with session_scope(sessions) as session:
        due = (
            (WebhookDelivery.id == delivery_id)
            & (WebhookDelivery.status == DeliveryStatus.PENDING)
            & (WebhookDelivery.next_attempt_at <= now)
        )
        deferred_until = _rate_limited_until(session, delivery_id, now, calls_per_window)
        if deferred_until is not None:
            session.execute(
                update(WebhookDelivery).where(due).values(next_attempt_at=deferred_until)
                .execution_options(synchronize_session=False)
            )  # fmt: skip
            logger.info("webhook delivery %s deferred to %s by its owner's rate limit", delivery_id, deferred_until)
            return None
        claimed = session.execute(
            update(WebhookDelivery)
            .where(due)
            .values(next_attempt_at=now + CLAIM_LEASE, last_attempt_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if not claimed:
            return None
        delivery = session.get(WebhookDelivery, delivery_id, populate_existing=True)
        webhook = _webhook(session, delivery.dataset_id)
        if webhook is not None:
            delivery.url = webhook.url  # where the call goes, as the deliveries list shows
        return _Call(
            event=delivery.event,
            url=delivery.url,
            secret=None if webhook is None else webhook.secret,
            body=canonical_body(delivery.payload),
        )


def _rate_limited_until(session: Session, delivery_id: int, now: datetime, calls_per_window: int) -> datetime | None:
    """When the owner of the delivery's dataset may be called again, if its calls of the last
    `RATE_WINDOW_S` are at the limit; None when a call may be made now. Locks the owner's row
    (Postgres) so that concurrent claims count each other's calls; SQLite's writers are serialized."""
    owner_id = session.scalar(
        select(Dataset.owner_id).join(WebhookDelivery, WebhookDelivery.dataset_id == Dataset.id)
        .where(WebhookDelivery.id == delivery_id)
    )  # fmt: skip
    if owner_id is None:
        return None
    session.execute(select(Owner.id).where(Owner.id == owner_id).with_for_update())
    window = timedelta(seconds=RATE_WINDOW_S)
    recent = (
        select(WebhookDelivery.last_attempt_at)
        .join(Dataset, WebhookDelivery.dataset_id == Dataset.id)
        .where(Dataset.owner_id == owner_id, WebhookDelivery.last_attempt_at > now - window)
        .order_by(WebhookDelivery.last_attempt_at.desc())
        .limit(calls_per_window)
    )
    times = session.scalars(recent).all()
    if len(times) < calls_per_window:
        return None
    return min(times) + window  # the oldest of the last `calls_per_window` calls leaves the window


def _post_within(
    deadline_s: float, client: httpx.Client, call: _Call, delivery_id: int, now: datetime
) -> tuple[int | None, str | None]:
    """`_post` given `deadline_s` in all: a receiver that keeps each network step under the
    per-step timeout (answering a byte at a time) cannot hold the worker longer. The late call
    runs on in its daemon thread until its connection fails or the client is closed."""
    outcome: list[tuple[int | None, str | None]] = []
    caller = threading.Thread(
        target=lambda: outcome.append(_post(client, call, delivery_id, now)), name=f"webhook-{delivery_id}", daemon=True
    )
    caller.start()
    caller.join(deadline_s)
    if not outcome:
        return None, f"no complete answer within {deadline_s:g} s"
    return outcome[0]


def _post(client: httpx.Client, call: _Call, delivery_id: int, now: datetime) -> tuple[int | None, str | None]:
    """Make the call: (the answer's status, None) when delivered, else (status or None, why not)."""
    assert call.secret is not None
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "X-LiLAW-Event": call.event,
        "X-LiLAW-Delivery": str(delivery_id),
        "X-LiLAW-Timestamp": str(timestamp),
        "X-LiLAW-Signature": sign(call.secret, timestamp, call.body),
    }
    try:
        request = client.build_request("POST", call.url, content=call.body, headers=headers, timeout=TIMEOUT_S)
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            if response.is_success:
                return response.status_code, None
            return response.status_code, _answer_error(response)
        finally:
            response.close()
    except httpx.TimeoutException as error:
        return None, f"no answer within {TIMEOUT_S:g} s ({type(error).__name__})"
    except httpx.ConnectError as error:
        return None, _short(f"could not connect: {error or type(error).__name__}")
    except Exception as error:  # noqa: BLE001 - whatever went wrong is this attempt's failure
        return None, _short(f"{type(error).__name__}: {error}")


def _answer_error(response: httpx.Response) -> str:
    message = f"the receiver answered {response.status_code} {response.reason_phrase}".rstrip()
    if response.is_redirect:
        location = response.headers.get("location", "")
        return _short(f"{message} (a redirect to {location!r}, which is not followed: set the final URL)")
    excerpt = _excerpt(response)
    return _short(f"{message}: {excerpt}" if excerpt else message)


def _excerpt(response: httpx.Response) -> str:
    """The start of the answer's body, read no further, on one line."""
    try:
        chunk = next(response.iter_bytes(chunk_size=_ANSWER_EXCERPT * 4), b"")
    except (httpx.HTTPError, httpx.StreamError):
        return ""
    text = chunk.decode("utf-8", "replace")
    return " ".join(text.split())[:_ANSWER_EXCERPT]


def _origin(url: str) -> str:
    """Where a URL points, for the logs: its path and query may carry a token of the receiver's."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{'' if parts.port is None else f':{parts.port}'}"


def _short(message: str) -> str:
    return message if len(message) <= MAX_ERROR_LENGTH else message[: MAX_ERROR_LENGTH - 3] + "..."
