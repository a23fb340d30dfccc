"""Runs one audit job end to end and records how it went; the worker's only entry into the domain.

A job row moves queued → running → succeeded | failed | cancelled. An execution *claims* the row
(status running, `celery_task_id` = its task id, `heartbeat_at` = now) and keeps the claim alive
by refreshing the heartbeat while it trains. Every write it makes afterwards is conditional on
still holding the claim, so a job cancelled by the API, or taken over by another execution,
stops at the next check without touching the row again.

Crash recovery:
- Per epoch, the dynamics and the progress are written in one transaction, replacing any rows of
  that epoch; the engine then checkpoints atomically. A new execution resumes after the last
  checkpointed epoch and rewrites at most that one epoch: never a duplicated row.
- A running job can be claimed again by a redelivery of the same task (the broker gives a message
  to one consumer at a time, so the previous holder is gone) or by any execution once its
  heartbeat is older than `settings.heartbeat_timeout_s`.
- `reap_stuck_jobs` (run by beat) covers the messages no broker redelivers in time: kombu's
  SQLAlchemy transport never redelivers the message of a killed worker, and Redis does so only
  after the visibility timeout, which is longer than the longest job. A running job with a stale
  heartbeat goes back to queued and its task is sent again, up to `MAX_ATTEMPTS` claims; after
  that it is marked failed.

Injected noise is applied once, before the first epoch, and the labels the model trains on are
kept in `<job_dir>/labels.npz` (`result_paths["labels"]`), so a resumed run trains on the same
labels and the suspects list can show them (`read_job_labels`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, joinedload, sessionmaker

from core.audit import AuditConfig, AuditResult, prepare_dataset, run_audit
from core.dataset import AuditDataset
from core.dynamics import SPLIT_VAL, EpochDynamics
from core.engine import AuditCancelled, Progress, WarmStart
from core.errors import AuditError, ConfigError, DatasetError
from core.loaders import load_dataset
from core.services import reaudits, webhooks
from core.services.blobs import dataset_source
from core.services.job_files import job_file, read_job_labels
from core.settings import Settings
from core.store import (
    AuditJob,
    DatasetVersion,
    JobStatus,
    LilawTrajectoryPoint,
    Sample,
    metric_rows,
    session_scope,
    write_epoch,
    write_metrics,
    write_scores,
    write_trajectory,
)
from core.store.models import utcnow

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
PROGRESS_INTERVAL_S = 1.0
CHECKPOINT_FILE = "checkpoint.pt"
LABELS_FILE = "labels.npz"
MODEL_FILE = "model.pt"
REAUDIT_EVENT = "reaudit.completed"
WEBHOOK_LISTED_SAMPLES = 100

Sessions = sessionmaker[Session]


def execute_job(sessions: Sessions, job_id: int, settings: Settings, *, task_id: str | None = None) -> JobStatus | None:
    """Run the job unless it is finished or held by a live execution; returns its status when
    this execution stops (None for a job that does not exist). Expected failures (`AuditError`)
    are recorded and returned as FAILED; any other exception is recorded and re-raised."""
    task_id = task_id or uuid.uuid4().hex
    status = _claim(sessions, job_id, task_id, settings)
    if status is not JobStatus.RUNNING:
        logger.info("job %s not run: %s", job_id, status or "no such job")
        return status
    try:
        with Heartbeat(sessions, job_id, task_id, interval_s=settings.heartbeat_timeout_s / 4) as heartbeat:
            _run(sessions, job_id, settings, heartbeat)
        return JobStatus.SUCCEEDED
    except AuditCancelled:
        return _stopped(sessions, job_id, settings)
    except AuditError as error:
        mark_failed(sessions, job_id, error.message, settings, task_id=task_id)
        return JobStatus.FAILED
    except Exception as error:
        mark_failed(sessions, job_id, failure_message(error), settings, task_id=task_id)
        raise


def failure_message(error: BaseException) -> str:
    """What a failed job records: the message of an expected failure, else type and message."""
    return error.message if isinstance(error, AuditError) else f"{type(error).__name__}: {error}"


def mark_failed(
    sessions: Sessions, job_id: int, message: str, settings: Settings, *, task_id: str | None = None
) -> bool:
    """Mark an unfinished job failed with `message`, unless another execution holds it; returns
    whether the row changed. Safe to call more than once."""
    with session_scope(sessions) as session:
        changed = session.execute(
            update(AuditJob)
            .where(
                AuditJob.id == job_id,
                AuditJob.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)),
                or_(AuditJob.celery_task_id.is_(None), AuditJob.celery_task_id == task_id),
            )
            .values(status=JobStatus.FAILED, error=message, finished_at=utcnow(), eta_seconds=None)
        ).rowcount
    if changed:
        _job_dir(settings, job_id).joinpath(CHECKPOINT_FILE).unlink(missing_ok=True)
    return bool(changed)


def reap_stuck_jobs(sessions: Sessions, settings: Settings, requeue: Callable[[int], None]) -> dict[str, list[int]]:
    """Running jobs silent for longer than the heartbeat timeout go back to the queue (`requeue`
    sends their task again), or are marked failed once they have been claimed `MAX_ATTEMPTS`
    times. The task is sent before the commit: if the commit fails, the job is still stale and
    the message still claims it; sent after, a failed send would strand a queued job."""
    stale = _stale_condition(settings)
    with session_scope(sessions) as session:
        candidates = session.scalars(select(AuditJob.id).where(stale)).all()
    reaped: dict[str, list[int]] = {"requeued": [], "failed": []}
    for job_id in candidates:
        with session_scope(sessions) as session:
            job = session.scalars(select(AuditJob).where(AuditJob.id == job_id, stale).with_for_update()).one_or_none()
            if job is None:  # claimed again meanwhile
                continue
            outcome = _reap(job, requeue)
        reaped[outcome].append(job_id)
        if outcome == "failed":
            _job_dir(settings, job_id).joinpath(CHECKPOINT_FILE).unlink(missing_ok=True)
    if candidates:
        logger.warning("reaped stuck jobs: %s", reaped)
    return reaped


def _reap(job: AuditJob, requeue: Callable[[int], None]) -> str:
    attempts = _attempts(job)
    if attempts >= MAX_ATTEMPTS:
        job.status, job.finished_at, job.eta_seconds = JobStatus.FAILED, utcnow(), None
        job.error = f"the job's worker stopped responding {attempts} times (last heartbeat {job.heartbeat_at})"
        return "failed"
    job.status = JobStatus.QUEUED
    requeue(job.id)
    return "requeued"


class Heartbeat:
    """Keeps an execution's claim on its job alive: `touch` refreshes `heartbeat_at` (and any
    progress columns given) if the claim still holds; a thread touches every `interval_s`, which
    covers the phases without progress callbacks. `lost` is set once the claim is gone."""

    def __init__(self, sessions: Sessions, job_id: int, task_id: str, interval_s: float):
        self.sessions = sessions
        self.job_id = job_id
        self.task_id = task_id
        self.interval_s = interval_s
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-job-{job_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def touch(self, session: Session | None = None, **values: Any) -> bool:
        """Refresh the heartbeat in `session`'s transaction (or a new one); False once the claim is lost."""
        if session is None:
            with session_scope(self.sessions) as session:
                return self.touch(session, **values)
        held = session.execute(
            update(AuditJob)
            .where(
                AuditJob.id == self.job_id,
                AuditJob.status == JobStatus.RUNNING,
                AuditJob.celery_task_id == self.task_id,
            )
            .values(heartbeat_at=utcnow(), **values)
        ).rowcount
        if not held:
            self.lost.set()
        return bool(held)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.touch():
                    return
            except Exception:
                logger.exception("heartbeat of job %s failed", self.job_id)


def _claim(sessions: Sessions, job_id: int, task_id: str, settings: Settings) -> JobStatus | None:
    with session_scope(sessions) as session:
        job = session.scalars(select(AuditJob).where(AuditJob.id == job_id).with_for_update()).one_or_none()
        if job is None:
            return None
        stale_before = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s)
        claimable = job.status is JobStatus.QUEUED or (
            job.status is JobStatus.RUNNING
            and (job.celery_task_id == task_id or job.heartbeat_at is None or job.heartbeat_at < stale_before)
        )
        if not claimable:
            return job.status
        now = utcnow()
        job.status, job.celery_task_id, job.heartbeat_at = JobStatus.RUNNING, task_id, now
        job.started_at = job.started_at or now
        job.error = None
        job.result = {**(job.result or {}), "attempts": _attempts(job) + 1}
        return JobStatus.RUNNING


def _attempts(job: AuditJob) -> int:
    return int((job.result or {}).get("attempts", 0))


def _stale_condition(settings: Settings):
    stale_before = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s)
    return (AuditJob.status == JobStatus.RUNNING) & or_(
        AuditJob.heartbeat_at.is_(None), AuditJob.heartbeat_at < stale_before
    )


def _run(sessions: Sessions, job_id: int, settings: Settings, heartbeat: Heartbeat) -> None:
    started = time.perf_counter()
    job_dir = _job_dir(settings, job_id)
    with session_scope(sessions) as session:
        job = session.scalars(
            select(AuditJob).options(joinedload(AuditJob.dataset_version)).where(AuditJob.id == job_id)
        ).one()
        config = _audit_config(job.config)
        attempts = _attempts(job)
        version = job.dataset_version
        samples = session.execute(
            select(Sample.sample_id, Sample.label)
            .where(Sample.dataset_version_id == version.id)
            .order_by(Sample.sample_index)
        ).all()
        warm_start, warm_start_note = _warm_start(session, job, config, settings) if job.warm_start else (None, None)
    dataset = _load_version(settings, version, samples)
    dataset, labels_path = _with_job_labels(dataset, config, job_dir)
    if labels_path is not None:
        heartbeat.touch(result_paths={"labels": _stored_path(settings, labels_path)})
    load_seconds = time.perf_counter() - started

    writer = _EpochWriter(sessions, job_id, heartbeat)
    result = run_audit(
        dataset,
        replace(config, inject_noise=None),
        on_epoch=writer.on_epoch,
        on_progress=writer.on_progress,
        checkpoint_path=job_dir / CHECKPOINT_FILE,
        should_stop=heartbeat.lost.is_set,
        warm_start=warm_start,
    )
    model_path = _save_model(result.model, job_dir / MODEL_FILE)
    timings = {
        **result.timings,
        "load_seconds": load_seconds,
        "dynamics_write_seconds": writer.write_seconds,
        "wall_seconds": time.perf_counter() - started,
    }
    with session_scope(sessions) as session:
        files = {"model": model_path, "labels": labels_path}
        paths = {name: _stored_path(settings, path) for name, path in files.items() if path}
        finished = {"status": JobStatus.SUCCEEDED, "finished_at": utcnow(), "eta_seconds": 0.0, "epoch": config.epochs}
        if writer.total_steps is not None:  # None when every epoch was done before this execution
            finished["step"] = writer.total_steps
        summary = _summary(result, config, timings, attempts)
        if job.warm_start:
            summary["warm_start"] = warm_start_note
        if not heartbeat.touch(session, **finished, result=summary, result_paths=paths):
            raise AuditCancelled("the job stopped being this execution's before its results were stored")
        write_scores(session, job_id, result.scores, result.default_scores, result.rank)
        write_trajectory(session, job_id, result.trajectory)
        write_metrics(session, job_id, metric_rows(result.detection) if result.detection else [])
        if job.previous_job_id is not None:
            _announce_reaudit(session, job_id, settings)
    (job_dir / CHECKPOINT_FILE).unlink(missing_ok=True)


class _EpochWriter:
    """The engine's callbacks: every epoch's dynamics with the progress in one transaction, and
    throttled progress updates in between."""

    def __init__(self, sessions: Sessions, job_id: int, heartbeat: Heartbeat):
        self.sessions = sessions
        self.job_id = job_id
        self.heartbeat = heartbeat
        self.steps_per_epoch: int | None = None
        self.total_steps: int | None = None
        self.write_seconds = 0.0
        self._last_update = 0.0

    def on_progress(self, progress: Progress) -> None:
        self.steps_per_epoch = progress.steps_per_epoch
        self.total_steps = progress.total_epochs * progress.steps_per_epoch
        now = time.monotonic()
        if now - self._last_update < PROGRESS_INTERVAL_S:
            return
        self._last_update = now
        self.heartbeat.touch(
            epoch=progress.epoch,
            total_epochs=progress.total_epochs,
            step=(progress.epoch - 1) * progress.steps_per_epoch + progress.step,
            total_steps=self.total_steps,
            eta_seconds=progress.eta_s,
        )

    def on_epoch(self, dynamics: EpochDynamics) -> None:
        started = time.perf_counter()
        with session_scope(self.sessions) as session:
            progress = {"epoch": dynamics.epoch}
            if self.steps_per_epoch is not None:
                progress["step"] = dynamics.epoch * self.steps_per_epoch
            if not self.heartbeat.touch(session, **progress):
                raise AuditCancelled(f"the job stopped being this execution's at epoch {dynamics.epoch}")
            write_epoch(session, self.job_id, dynamics)
        self.write_seconds += time.perf_counter() - started


def _warm_start(
    session: Session, job: AuditJob, config: AuditConfig, settings: Settings
) -> tuple[WarmStart | None, str]:
    """The trained model and final α, β, δ of the job's previous job, and a note on what was used.
    A previous job with other classes, another model or no model file gives a cold start."""
    previous = None
    if job.previous_job_id is not None:
        previous = session.get(AuditJob, job.previous_job_id, options=[joinedload(AuditJob.dataset_version)])
    if previous is None or previous.status is not JobStatus.SUCCEEDED:
        return None, "cold start: the previous job is gone or did not succeed"
    previous_config = _audit_config(previous.config)
    if previous.dataset_version.class_names != job.dataset_version.class_names:
        return None, f"cold start: the classes changed since job {previous.id}"
    if (previous_config.model, previous_config.image_size) != (config.model, config.image_size):
        return None, f"cold start: job {previous.id} trained another model"
    model_path = job_file(previous, "model", settings.data_dir)
    if model_path is None or not model_path.is_file():
        return None, f"cold start: the model file of job {previous.id} is missing"
    last = session.scalar(
        select(LilawTrajectoryPoint)
        .where(LilawTrajectoryPoint.job_id == previous.id)
        .order_by(LilawTrajectoryPoint.epoch.desc(), LilawTrajectoryPoint.step.desc())
        .limit(1)
    )
    if last is None:
        return None, f"cold start: job {previous.id} recorded no alpha, beta, delta"
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    return WarmStart(state, (last.alpha, last.beta, last.delta)), f"from job {previous.id}"


def _announce_reaudit(session: Session, job_id: int, settings: Settings) -> None:
    """Queue the webhook call of a finished re-audit (in the transaction that finishes the job)."""
    job = session.get(AuditJob, job_id, options=[joinedload(AuditJob.dataset_version)])
    report = reaudits.reaudit_report(session, job, settings.data_dir, limit=WEBHOOK_LISTED_SAMPLES)
    payload = {
        "event": REAUDIT_EVENT,
        "dataset_id": job.dataset_version.dataset_id,
        "version": report.version,
        "job_id": job.id,
        "previous_job_id": report.previous_job_id,
        "previous_version": report.previous_version,
        "schedule_id": job.schedule_id,
        "status": job.status.value,
        "counts": report.counts,
        "newly_suspected": [sample.sample_id for sample in report.samples["newly_suspected"]],
        "report": f"/jobs/{job.id}/report",
    }
    webhooks.enqueue_delivery(session, payload["dataset_id"], job.id, REAUDIT_EVENT, payload, now=utcnow())


def _audit_config(values: dict[str, Any]) -> AuditConfig:
    try:
        return AuditConfig.from_dict(values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"the job's configuration is invalid: {error}") from None


def _load_version(settings: Settings, version: DatasetVersion, samples: list) -> AuditDataset:
    """The version's blob as a dataset, checked against its sample rows (same ids, order, labels)."""
    dataset = load_dataset(dataset_source(version, settings), modality=version.modality)
    if len(dataset) != len(samples):
        raise DatasetError(
            f"dataset version {version.id} has {len(samples)} sample rows but its file holds {len(dataset)} samples"
        )
    for index, ((sample_id, label), loaded_id, loaded_label) in enumerate(zip(samples, dataset.sample_ids, dataset.y)):
        if sample_id != loaded_id or label != loaded_label:
            raise DatasetError(
                f"dataset version {version.id} does not match its file at sample {index}: "
                f"stored {sample_id!r} (label {label}), file {loaded_id!r} (label {int(loaded_label)})"
            )
    return dataset


def _with_job_labels(dataset: AuditDataset, config: AuditConfig, job_dir: Path) -> tuple[AuditDataset, Path | None]:
    """Apply the job's injected noise: from its labels file when an earlier execution wrote one,
    else by drawing it (seeded) and writing the file before training starts."""
    if not config.inject_noise:
        return dataset, None
    path = job_dir / LABELS_FILE
    if path.is_file():
        stored = read_job_labels(path)
        if len(stored.labels) != len(dataset):
            raise DatasetError(f"{path} holds {len(stored.labels)} labels for {len(dataset)} samples")
        labelled = replace(dataset, y=stored.labels, is_mislabeled=stored.is_mislabeled, true_labels=stored.true_labels)
        return labelled, path
    noisy = prepare_dataset(dataset, config)
    _atomic_write(
        path,
        lambda tmp: np.savez(tmp, labels=noisy.y, is_mislabeled=noisy.is_mislabeled, true_labels=noisy.true_labels),
    )
    return noisy, path


def _save_model(model: torch.nn.Module, path: Path) -> Path:
    _atomic_write(path, lambda tmp: torch.save(model.state_dict(), tmp))
    return path


def _atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def _summary(result: AuditResult, config: AuditConfig, timings: dict[str, float], attempts: int) -> dict[str, Any]:
    dataset = result.dataset
    flags = dataset.is_mislabeled
    return {
        "attempts": attempts,
        "model": result.model_name,
        "device": result.device,
        "num_samples": len(dataset),
        "num_classes": dataset.num_classes,
        "num_validation": int((result.split == SPLIT_VAL).sum()),
        "validation_scoring": "validation samples are scored out of sample, at the end of every epoch",
        "default_score": result.default_score,
        "noise": config.inject_noise,
        "num_known_mislabeled": None if flags is None else int(flags.sum()),
        "test_metrics": result.test_metrics,
        "timings": {name: round(float(seconds), 4) for name, seconds in timings.items()},
    }


def _stopped(sessions: Sessions, job_id: int, settings: Settings) -> JobStatus | None:
    """After this execution lost its claim: a cancelled job gets its finish time and loses its
    checkpoint; a job taken over or re-queued is left to its new execution."""
    with session_scope(sessions) as session:
        job = session.get(AuditJob, job_id)
        if job is None:
            return None
        if job.status is JobStatus.CANCELLED:
            job.finished_at = job.finished_at or utcnow()
            job.eta_seconds = None
    if job.status is JobStatus.CANCELLED:
        _job_dir(settings, job_id).joinpath(CHECKPOINT_FILE).unlink(missing_ok=True)
    return job.status


def _stored_path(settings: Settings, path: Path) -> str:
    """How `result_paths` names a job's file: relative to the data dir, which every host mounts."""
    return path.relative_to(settings.data_dir).as_posix()


def _job_dir(settings: Settings, job_id: int) -> Path:
    return settings.job_dir / str(job_id)
