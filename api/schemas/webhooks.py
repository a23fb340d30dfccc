"""A dataset's webhook, called when a re-audit finishes, and its deliveries."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from api.schemas.common import Schema
from core.statuses import DeliveryStatus
from core.webhook_limits import MAX_SECRET_LENGTH, MAX_URL_LENGTH, MIN_SECRET_LENGTH


class WebhookCreate(Schema):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=MAX_URL_LENGTH,
        description="an http:// or https:// URL; redirects are not followed",
        examples=["https://example.org/hooks/lilaw"],
    )
    secret: str | None = Field(
        None,
        min_length=MIN_SECRET_LENGTH,
        max_length=MAX_SECRET_LENGTH,
        description="signs every call; default: a random one, returned once",
    )


class WebhookPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int
    url: str
    created_at: datetime = Field(description="when this URL and secret were set")


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="signs every call (X-LiLAW-Signature); shown only in this response")


class DeliveryPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_id: int | None
    event: str
    url: str
    status: DeliveryStatus
    attempts: int = Field(description="failed attempts so far")
    next_attempt_at: datetime | None = Field(description="when it is tried next (pending only)")
    last_status_code: int | None = Field(description="the receiver's last answer; null when none came")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
