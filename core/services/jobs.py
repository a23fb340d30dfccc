"""Audit jobs: created queued from a validated configuration, read with their progress and α/β/δ
trajectory, listed, cancelled.

Sending a job to the broker is the caller's business (after its transaction committed the job
row); `mark_failed` records when that could not be done. A cancelled job stays cancelled: the
worker reads the status at every progress tick and stops.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from core.audit import AuditConfig
from core.errors import ConfigError
from core.models import check_model
from core.services import ConflictError, NotFoundError
from core.services.datasets import get_version, require_ready
from core.store.models import AuditJob, DatasetVersion, JobStatus, LilawTrajectoryPoint, utcnow


def create_job(session: Session, owner_id: int, dataset_id: int, version: int | None, config: AuditConfig) -> AuditJob:
    """A queued job auditing a version of the owner's dataset (the latest when `version` is None)."""
    dataset_version = get_version(session, owner_id, dataset_id, version)
    require_ready(dataset_version)
    config.validate()
    check_model_name(config.model, dataset_version.modality)
    if config.embeddings_backbone and dataset_version.modality != "image":
        raise ConfigError(f"embeddings mode is for images; this version holds {dataset_version.modality} samples")
    job = AuditJob(
        owner_id=owner_id,
        dataset_version=dataset_version,
        config=config.to_dict(),
        status=JobStatus.QUEUED,
        total_epochs=config.epochs,
    )
    session.add(job)
    session.flush()
    return job


def check_model_name(name: str | None, modality: str) -> None:
    """None means the modality's default model."""
    if name is not None:
        check_model(name, modality)


def mark_failed(job: AuditJob, reason: str) -> None:
    job.status = JobStatus.FAILED
    job.error = reason
    job.finished_at = utcnow()


def get_job(session: Session, owner_id: int, job_id: int) -> AuditJob:
    statement = (
        select(AuditJob)
        .where(AuditJob.id == job_id, AuditJob.owner_id == owner_id)
        .options(joinedload(AuditJob.dataset_version))
    )
    job = session.scalar(statement)
    if job is None:
        raise NotFoundError(f"job {job_id} not found")
    return job


def list_jobs(
    session: Session, owner_id: int, *, dataset_id: int | None = None, status: JobStatus | None = None, limit: int = 50
) -> list[AuditJob]:
    """The owner's jobs, newest first."""
    statement = (
        select(AuditJob)
        .where(AuditJob.owner_id == owner_id)
        .options(joinedload(AuditJob.dataset_version))
        .order_by(AuditJob.id.desc())
        .limit(limit)
    )
    if dataset_id is not None:
        statement = statement.join(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id)
    if status is not None:
        statement = statement.where(AuditJob.status == status)
    return list(session.scalars(statement))


def cancel_job(session: Session, owner_id: int, job_id: int) -> AuditJob:
    job = get_job(session, owner_id, job_id)
    if job.status.is_terminal:
        raise ConflictError(f"job {job_id} is already {job.status.value}")
    job.status = JobStatus.CANCELLED
    job.finished_at = utcnow()
    session.flush()
    return job


def trajectory(session: Session, job_id: int, max_points: int) -> list[LilawTrajectoryPoint]:
    """The job's α/β/δ points in training order, at most `max_points` of them: evenly spaced,
    the first and the last always kept."""
    statement = (
        select(LilawTrajectoryPoint)
        .where(LilawTrajectoryPoint.job_id == job_id)
        .order_by(LilawTrajectoryPoint.epoch, LilawTrajectoryPoint.step)
    )
    points = list(session.scalars(statement))
    if len(points) <= max_points:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, max_points).round().astype(int))
    return [points[i] for i in keep]
