"""Re-audit schedules of datasets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models.base import Base, created_at_column, utcnow


class AuditSchedule(Base):
    """When a dataset is re-audited: every `interval_seconds`, or at the times of a five-field
    `cron` expression (UTC), exactly one of the two. Beat's periodic task starts the schedules
    whose `next_run_at` has come (`core.services.schedules`); a run that finds the dataset's latest
    version audited already is skipped, unless forced. Its jobs point back at it (`schedule_id`).
    `config` is the re-audits' `AuditConfig` (as a dict)."""

    __tablename__ = "audit_schedules"
    __table_args__ = (
        CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="one_timing"),
        Index("ix_audit_schedules_next_run_at", "next_run_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), unique=True)
    cron: Mapped[str | None] = mapped_column(String(120))
    interval_seconds: Mapped[int | None]
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    warm_start: Mapped[bool] = mapped_column(default=False)
    enabled: Mapped[bool] = mapped_column(default=True)
    next_run_at: Mapped[datetime]
    last_run_at: Mapped[datetime | None]
    last_outcome: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=func.now())
