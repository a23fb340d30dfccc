"""A job's detection metrics against the known flags: stored by the worker, recomputed on request
or when reviewers' decisions changed the known flags, from the stored scores and dynamics.

The known flags are the dataset version's, overridden by reviewers' decisions; a job with
injected noise trained on other labels, so its flags are those of its labels file.
"""

from __future__ import annotations

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.audit import detection_summary
from core.dynamics import FLOAT_FIELDS, OPTIONAL_FLOAT_FIELDS, DynamicsHistory
from core.score_registry import SCORE_NAMES
from core.services import ConflictError, decisions
from core.services.artifacts import JobArtifacts
from core.store.dynamics_writer import metric_rows, write_metrics
from core.store.models import AuditJob, JobMetric, JobStatus, Sample, SampleEpoch, SampleScore


class NoKnownFlagsError(ConflictError):
    """No sample of the job has a known flag to measure detection against."""


def job_metrics(session: Session, job_id: int) -> list[JobMetric]:
    statement = (
        select(JobMetric)
        .where(JobMetric.job_id == job_id)
        .order_by(JobMetric.score, JobMetric.epoch.nulls_first(), JobMetric.split)
    )
    return list(session.scalars(statement))


def current_metrics(session: Session, job: AuditJob, artifacts: JobArtifacts) -> list[JobMetric]:
    """The job's detection metrics, first recomputed if reviewers' decisions were made or undone
    since they were computed (not for a job with injected noise: its flags are the injected ones).
    Concurrent readers recompute one after the other, holding the job row."""
    if _decided_since_metrics(session, job):
        session.scalar(select(AuditJob.id).where(AuditJob.id == job.id).with_for_update())
        if _decided_since_metrics(session, job):
            try:
                recompute_metrics(session, job, artifacts)
            except NoKnownFlagsError:
                write_metrics(session, job.id, [])
    return job_metrics(session, job.id)


def recompute_metrics(session: Session, job: AuditJob, artifacts: JobArtifacts) -> None:
    """Replace the job's detection metrics with those against the current known flags, from the
    stored scores and dynamics. Samples without a known flag are left out."""
    if job.status is not JobStatus.SUCCEEDED:
        raise ConflictError(f"job {job.id} is {job.status.value}; metrics are recomputed for succeeded jobs")
    known, flags = known_flags(session, job, artifacts)
    if not known.any():
        raise NoKnownFlagsError("no sample of this dataset version has a known flag; upload flags or review first")
    scores = stored_scores(session, job.id)
    history = _stored_history(session, job.id, len(flags))
    detection = detection_summary(
        _history_subset(history, known),
        {name: values[known] for name, values in scores.items()},
        flags[known],
        history.split[known],
    )
    write_metrics(session, job.id, metric_rows(detection))


def known_flags(session: Session, job: AuditJob, artifacts: JobArtifacts) -> tuple[np.ndarray, np.ndarray]:
    """Which samples have a known flag, and the flags (False where unknown), by sample index: the
    injected ones, or the uploaded ones overridden where reviewers' decisions agree."""
    labels = artifacts.read_labels()
    if labels is not None:
        return np.ones(len(labels.is_mislabeled), dtype=bool), labels.is_mislabeled.astype(bool)
    stored = session.scalars(
        select(Sample.is_mislabeled)
        .where(Sample.dataset_version_id == job.dataset_version_id)
        .order_by(Sample.sample_index)
    ).all()
    for review in decisions.job_decisions(session, job, artifacts).values():
        if review.flag is not None:
            stored[review.sample_index] = review.flag
    return np.array([flag is not None for flag in stored]), np.array([bool(flag) for flag in stored])


def require_scores(session: Session, job: AuditJob) -> None:
    if session.scalar(select(SampleScore.rank).where(SampleScore.job_id == job.id).limit(1)) is None:
        raise ConflictError(f"job {job.id} has no scores yet (it is {job.status.value})")


def stored_scores(session: Session, job_id: int) -> dict[str, np.ndarray]:
    """The job's aggregated scores by sample index (the ones it has: cleanlab's only with cross-fit)."""
    columns = [getattr(SampleScore, name) for name in SCORE_NAMES]
    rows = session.execute(
        select(*columns).where(SampleScore.job_id == job_id).order_by(SampleScore.sample_index)
    ).all()
    if not rows:
        raise ConflictError(f"job {job_id} has no stored scores")
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return {name: values[:, i] for i, name in enumerate(SCORE_NAMES) if not np.isnan(values[:, i]).all()}


def _decided_since_metrics(session: Session, job: AuditJob) -> bool:
    if job.status is not JobStatus.SUCCEEDED or job.config.get("inject_noise"):
        return False
    changed = decisions.last_change(session, job.dataset_version.dataset_id)
    if changed is None:
        return False
    computed = session.scalar(select(func.min(JobMetric.created_at)).where(JobMetric.job_id == job.id))
    return computed is None or computed < changed


def _stored_history(session: Session, job_id: int, num_samples: int) -> DynamicsHistory:
    """The job's stored dynamics as [epochs, samples] arrays (NULL read as NaN)."""
    fields = ["epoch", "split", "predicted", *FLOAT_FIELDS, *OPTIONAL_FLOAT_FIELDS]
    statement = (
        select(*(getattr(SampleEpoch, name) for name in fields))
        .where(SampleEpoch.job_id == job_id)
        .order_by(SampleEpoch.epoch, SampleEpoch.sample_index)
    )
    rows = np.array(session.execute(statement).all(), dtype=np.float64).reshape(-1, len(fields))
    if len(rows) == 0 or len(rows) % num_samples:
        raise ConflictError(f"job {job_id} has no complete stored dynamics")
    table = {name: rows[:, i].reshape(-1, num_samples) for i, name in enumerate(fields)}
    return DynamicsHistory(
        epochs=table["epoch"][:, 0].astype(np.int64),
        split=table["split"][-1].astype(np.uint8),
        predicted=table["predicted"].astype(np.int64),
        **{name: table[name].astype(np.float32) for name in FLOAT_FIELDS},
        # A field the run did not record (all NULL) stays None, as the engine hands it out.
        **{name: table[name].astype(np.float32) for name in OPTIONAL_FLOAT_FIELDS if not np.isnan(table[name]).all()},
    )


def _history_subset(history: DynamicsHistory, keep: np.ndarray) -> DynamicsHistory:
    return DynamicsHistory(
        epochs=history.epochs,
        split=history.split[keep],
        predicted=history.predicted[:, keep],
        **{name: getattr(history, name)[:, keep] for name in FLOAT_FIELDS},
        **{name: getattr(history, name)[:, keep] for name in OPTIONAL_FLOAT_FIELDS if getattr(history, name) is not None},
    )
