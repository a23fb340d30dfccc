"""Audit jobs and what they produce: per-sample dynamics per epoch, the LiLAW trajectory,
per-sample scores and detection metrics.

`sample_epochs` holds one row per sample per epoch of every job (10^7 rows for a large job). On
Postgres it is LIST-partitioned by `job_id`, one partition per job (see `core.store.partitions`),
so a job's dynamics are written, read and dropped without touching any other job's rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import REAL, CheckConstraint, Double, ForeignKey, Index, Integer, SmallInteger, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.score_registry import SCORE_NAMES
from core.statuses import JobStatus
from core.store.models.base import Base, created_at_column, status_enum
from core.store.models.datasets import DatasetVersion, Owner


class AuditJob(Base):
    """One audit of a dataset version. `result_paths` names the stored artifacts (e.g. the trained
    model file); `result` holds the run's summary, classifier metrics included."""

    __tablename__ = "audit_jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    dataset_version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True
    )
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[JobStatus] = mapped_column(status_enum(JobStatus), default=JobStatus.QUEUED, index=True)
    epoch: Mapped[int] = mapped_column(default=0)
    total_epochs: Mapped[int | None]
    step: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int | None]
    eta_seconds: Mapped[float | None] = mapped_column(Double)
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    celery_task_id: Mapped[str | None] = mapped_column(String(155))
    result_paths: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    # A re-audit: the earlier job of the dataset it is compared with (and, with `warm_start`,
    # starts from), and the schedule that started it, if any.
    previous_job_id: Mapped[int | None] = mapped_column(ForeignKey("audit_jobs.id", ondelete="SET NULL"))
    warm_start: Mapped[bool] = mapped_column(default=False, server_default=false())
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("audit_schedules.id", ondelete="SET NULL"))
    # The samples whose labels the audit trusts, {"<sample index>": class index}: reviewers'
    # agreed verdicts, snapshot when the re-audit was started (`core.services.reaudits`), so that
    # a retried or resumed execution trains on the same set. NULL: no trusted set.
    trusted: Mapped[dict[str, Any] | None]

    owner: Mapped[Owner] = relationship(lazy="raise")
    dataset_version: Mapped[DatasetVersion] = relationship(lazy="raise")


class SampleEpoch(Base):
    """The dynamics of one sample in one epoch of a job (see `core.dynamics.EpochDynamics`).
    Float columns are NULL where the engine produced NaN.

    `job_id` has no foreign key: checking one on every row triples the cost of a bulk write on
    Postgres. Instead the writer checks the job once per epoch, and a trigger on `audit_jobs`
    removes a deleted job's rows (drops its partition on Postgres)."""

    __tablename__ = "sample_epochs"
    __table_args__ = {"postgresql_partition_by": "LIST (job_id)"}

    job_id: Mapped[int] = mapped_column(primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    sample_index: Mapped[int] = mapped_column(primary_key=True)
    split: Mapped[int] = mapped_column(SmallInteger)
    w_alpha: Mapped[float | None] = mapped_column(REAL)
    w_beta: Mapped[float | None] = mapped_column(REAL)
    w_delta: Mapped[float | None] = mapped_column(REAL)
    w: Mapped[float | None] = mapped_column(REAL)
    loss: Mapped[float | None] = mapped_column(REAL)
    p_label: Mapped[float | None] = mapped_column(REAL)
    p_max: Mapped[float | None] = mapped_column(REAL)
    predicted: Mapped[int] = mapped_column(Integer)
    margin: Mapped[float | None] = mapped_column(REAL)
    el2n: Mapped[float | None] = mapped_column(REAL)
    # Recorded by some runs only (`core.dynamics.OPTIONAL_FLOAT_FIELDS`), NULL for the others.
    fbr_agreement: Mapped[float | None] = mapped_column(REAL)


class LilawTrajectoryPoint(Base):
    """α, β, δ after a meta step; `step` counts the training steps within `epoch` (0 = epoch start)."""

    __tablename__ = "lilaw_trajectory"

    job_id: Mapped[int] = mapped_column(ForeignKey("audit_jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    step: Mapped[int] = mapped_column(primary_key=True)
    alpha: Mapped[float] = mapped_column(Double)
    beta: Mapped[float] = mapped_column(Double)
    delta: Mapped[float] = mapped_column(Double)


class SampleScore(Base):
    """Every score of one sample for a job, higher = more suspicious, and the sample's rank under
    the job's default score (1 = most suspicious, unique within the job). One nullable REAL column
    per score of `core.score_registry`, spelled out as the migrations spell them out (tests/store
    checks the migrated table against the registry)."""

    __tablename__ = "sample_scores"
    __table_args__ = (Index("ix_sample_scores_job_id_rank", "job_id", "rank", unique=True),)

    job_id: Mapped[int] = mapped_column(ForeignKey("audit_jobs.id", ondelete="CASCADE"), primary_key=True)
    sample_index: Mapped[int] = mapped_column(primary_key=True)
    rank: Mapped[int]
    default_score: Mapped[float] = mapped_column(REAL)
    w_alpha: Mapped[float | None] = mapped_column(REAL)
    w_beta: Mapped[float | None] = mapped_column(REAL)
    w_delta: Mapped[float | None] = mapped_column(REAL)
    w: Mapped[float | None] = mapped_column(REAL)
    aum: Mapped[float | None] = mapped_column(REAL)
    datamaps_confidence: Mapped[float | None] = mapped_column(REAL)
    datamaps_variability: Mapped[float | None] = mapped_column(REAL)
    dataiq_aleatoric: Mapped[float | None] = mapped_column(REAL)
    el2n: Mapped[float | None] = mapped_column(REAL)
    loss: Mapped[float | None] = mapped_column(REAL)
    forgetting: Mapped[float | None] = mapped_column(REAL)
    cl_self_confidence: Mapped[float | None] = mapped_column(REAL)
    cl_normalized_margin: Mapped[float | None] = mapped_column(REAL)
    fbr_agreement: Mapped[float | None] = mapped_column(REAL)

    def scores(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in SCORE_NAMES}


class JobMetric(Base):
    """Detection quality of one score of a job against the known flags: for one epoch, or
    aggregated over epochs when `epoch` is NULL; over the samples selected by `split`
    ('all', 'train', ...). `precision_at_k` / `recall_at_k` map k to the value. `created_at` tells
    whether reviewers' decisions changed the known flags since the metrics were computed."""

    __tablename__ = "job_metrics"
    __table_args__ = (Index("ix_job_metrics_job_id_score", "job_id", "score"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("audit_jobs.id", ondelete="CASCADE"))
    score: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int | None]
    split: Mapped[str] = mapped_column(String(16), default="all")
    auroc: Mapped[float | None] = mapped_column(Double)
    auprc_mislabeled: Mapped[float | None] = mapped_column(Double)
    auprc_clean: Mapped[float | None] = mapped_column(Double)
    precision_at_k: Mapped[dict[str, Any] | None]
    recall_at_k: Mapped[dict[str, Any] | None]
    num_mislabeled: Mapped[int | None]
    created_at: Mapped[datetime] = created_at_column()
