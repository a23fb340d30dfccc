"""Warm start of a re-audit: it begins from the trained model and the final α, β, δ of the job it
re-audits, when that job can give them."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from core.audit import AuditConfig
from core.checkpoints import WarmStart
from core.services.artifacts import job_artifacts
from core.settings import Settings
from core.store import AuditJob, JobStatus, LilawTrajectoryPoint


def warm_start(
    session: Session, job: AuditJob, config: AuditConfig, settings: Settings
) -> tuple[WarmStart | None, str]:
    """The trained model and final α, β, δ of the job's previous job, and a note on what was used.
    A previous job with other classes, another model or no model file gives a cold start."""
    previous = None
    if job.previous_job_id is not None:
        previous = session.get(AuditJob, job.previous_job_id, options=[joinedload(AuditJob.dataset_version)])
    if previous is None or previous.status is not JobStatus.SUCCEEDED:
        return None, "cold start: the previous job is gone or did not succeed"
    previous_config = AuditConfig.from_dict(previous.config)  # valid: the job succeeded with it
    if previous.dataset_version.class_names != job.dataset_version.class_names:
        return None, f"cold start: the classes changed since job {previous.id}"
    if (previous_config.model, previous_config.image_size) != (config.model, config.image_size):
        return None, f"cold start: job {previous.id} trained another model"
    artifacts = job_artifacts(settings, previous)
    if artifacts.model_file() is None:
        return None, f"cold start: the model file of job {previous.id} is missing"
    last = session.scalar(
        select(LilawTrajectoryPoint)
        .where(LilawTrajectoryPoint.job_id == previous.id)
        .order_by(LilawTrajectoryPoint.epoch.desc(), LilawTrajectoryPoint.step.desc())
        .limit(1)
    )
    if last is None:
        return None, f"cold start: job {previous.id} recorded no alpha, beta, delta"
    return WarmStart(artifacts.read_model(), (last.alpha, last.beta, last.delta)), f"from job {previous.id}"
