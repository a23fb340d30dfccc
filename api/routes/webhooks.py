"""/datasets/{id}/webhook: the URL called, signed and retried, when a re-audit of the dataset
finishes, and its deliveries (see `core.services.webhooks` for what a receiver gets and how it
checks the signature)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import CurrentOwner, SessionDep, SettingsDep
from api.schemas import DeliveryPublic, ErrorPublic, WebhookCreate, WebhookCreated, WebhookPublic
from api.schemas.common import DbId
from core.services import datasets, webhooks
from core.store.models import utcnow

PING_EVENT = "ping"

router = APIRouter(
    prefix="/datasets/{dataset_id}/webhook",
    tags=["webhooks"],
    responses={
        401: {"model": ErrorPublic, "description": "missing or invalid API key"},
        404: {"model": ErrorPublic, "description": "no such dataset, webhook or delivery of the caller's"},
        422: {"model": ErrorPublic, "description": "invalid request"},
    },
)


@router.put("")
def set_webhook(
    dataset_id: DbId, body: WebhookCreate, owner: CurrentOwner, session: SessionDep, settings: SettingsDep
) -> WebhookCreated:
    """Call `url` whenever a re-audit of the dataset finishes (replacing the webhook set before).
    Keep the secret from this response: every call is signed with it, and it is never shown again."""
    datasets.get_dataset(session, owner.id, dataset_id)
    webhook, secret = webhooks.set_webhook(
        session, dataset_id, body.url, body.secret, allow_private_hosts=settings.webhook_allow_private_hosts
    )
    return WebhookCreated(
        id=webhook.id, dataset_id=dataset_id, url=webhook.url, created_at=webhook.created_at, secret=secret
    )


@router.get("")
def get_webhook(dataset_id: DbId, owner: CurrentOwner, session: SessionDep) -> WebhookPublic:
    """The dataset's webhook (its secret is never shown again)."""
    datasets.get_dataset(session, owner.id, dataset_id)
    return WebhookPublic.model_validate(webhooks.get_webhook(session, dataset_id))


@router.delete("", status_code=204)
def delete_webhook(dataset_id: DbId, owner: CurrentOwner, session: SessionDep) -> Response:
    """Stop calling the webhook; deliveries still pending fail."""
    datasets.get_dataset(session, owner.id, dataset_id)
    webhooks.delete_webhook(session, dataset_id)
    return Response(status_code=204)


@router.get("/deliveries")
def list_deliveries(
    dataset_id: DbId, owner: CurrentOwner, session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[DeliveryPublic]:
    """The webhook's deliveries, newest first: pending, delivered or failed, with the last error."""
    datasets.get_dataset(session, owner.id, dataset_id)
    deliveries = webhooks.list_deliveries(session, dataset_id, limit)
    return [DeliveryPublic.model_validate(delivery) for delivery in deliveries]


@router.post(
    "/deliveries/{delivery_id}/retry",
    responses={409: {"model": ErrorPublic, "description": "delivered already, or no webhook to send it to"}},
)
def retry_delivery(dataset_id: DbId, delivery_id: DbId, owner: CurrentOwner, session: SessionDep) -> DeliveryPublic:
    """Send a failed delivery again at the worker's next pass, to the webhook's current URL, with
    a fresh count of attempts."""
    datasets.get_dataset(session, owner.id, dataset_id)
    return DeliveryPublic.model_validate(webhooks.retry_delivery(session, dataset_id, delivery_id, now=utcnow()))


@router.post("/test", status_code=201)
def test_webhook(dataset_id: DbId, owner: CurrentOwner, session: SessionDep) -> DeliveryPublic:
    """Queue a `ping` call to the webhook (payload `{"event": "ping", "dataset_id": ...}`), made at
    the worker's next pass; follow it in the deliveries."""
    datasets.get_dataset(session, owner.id, dataset_id)
    webhooks.get_webhook(session, dataset_id)
    payload = {"event": PING_EVENT, "dataset_id": dataset_id}
    delivery = webhooks.enqueue_delivery(session, dataset_id, None, PING_EVENT, payload, now=utcnow())
    return DeliveryPublic.model_validate(delivery)
