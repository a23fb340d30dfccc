"""Datasets' webhooks and the deliveries of their calls."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.statuses import DeliveryStatus
from core.store.models.base import Base, created_at_column, status_enum


class DatasetWebhook(Base):
    """The URL called when a re-audit of the dataset finishes, and the secret its calls are
    signed with (HMAC-SHA256, see `core.services.webhook_signing`). The secret is stored as given: the
    server needs it to sign."""

    __tablename__ = "dataset_webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = created_at_column()


class WebhookDelivery(Base):
    """One event to deliver to a dataset's webhook, retried with backoff until the receiver
    answers 2xx or the attempts run out. `payload` is the JSON body, as sent."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("audit_jobs.id", ondelete="SET NULL"))
    event: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[dict[str, Any]]
    status: Mapped[DeliveryStatus] = mapped_column(status_enum(DeliveryStatus), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
    delivered_at: Mapped[datetime | None]
    # When the last call was made: the per-owner rate limit counts the calls of the last window.
    last_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
