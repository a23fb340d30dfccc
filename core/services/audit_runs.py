"""Runs one audit job end to end and records how it went; the worker's only entry into the domain.
Which execution may run a job, and what becomes of a job whose execution failed, lost its claim
or went silent, is `core.services.job_claims`.

Crash recovery:
- Per epoch, the dynamics and the progress are written in one transaction, replacing any rows of
  that epoch; the engine then checkpoints atomically. A new execution resumes after the last
  checkpointed epoch and rewrites at most that one epoch: never a duplicated row.
- Injected noise is drawn once, by `run_audit` before the first epoch; the labels go to the job's
  artifacts and are recorded before training starts, so a resumed run trains on the same labels
  and the suspects list can show them.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload, sessionmaker

from core.audit import AuditConfig, AuditResult, NoisyLabels, run_audit
from core.dataset import AuditDataset
from core.dynamics import SPLIT_VAL, EpochDynamics
from core.embeddings import embeddings_dir
from core.engine import AuditCancelled, Progress
from core.errors import AuditError, ConfigError, DatasetError
from core.loaders import load_dataset
from core.services import job_claims, reaudits, webhooks
from core.services.artifacts import ClassProbabilities, JobArtifacts, job_artifacts
from core.services.backbones import resolved_weights
from core.services.blobs import dataset_source, version_file_errors
from core.services.warm_start import warm_start
from core.settings import Settings
from core.store import (
    AuditJob,
    DatasetVersion,
    JobStatus,
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

PROGRESS_INTERVAL_S = 1.0
REAUDIT_EVENT = "reaudit.completed"
WEBHOOK_LISTED_SAMPLES = 100

Sessions = sessionmaker[Session]


def execute_job(sessions: Sessions, job_id: int, settings: Settings, *, task_id: str | None = None) -> JobStatus | None:
    """Run the job unless it is finished or held by a live execution; returns its status when
    this execution stops (None for a job that does not exist). Expected failures (`AuditError`)
    are recorded and returned as FAILED; any other exception is logged, recorded as a generic
    message naming its class only (`job_claims.failure_message`) and re-raised."""
    task_id = task_id or uuid.uuid4().hex
    status = job_claims.claim(sessions, job_id, task_id, settings)
    if status is not JobStatus.RUNNING:
        logger.info("job %s not run: %s", job_id, status or "no such job")
        return status
    try:
        interval_s = settings.resolved_heartbeat_interval_s
        with job_claims.Heartbeat(sessions, job_id, task_id, interval_s=interval_s) as heartbeat:
            _run(sessions, job_id, settings, heartbeat)
        return JobStatus.SUCCEEDED
    except AuditCancelled:
        return job_claims.settle_lost_claim(sessions, job_id, settings)
    except AuditError as error:
        job_claims.mark_failed(sessions, job_id, error.message, settings, task_id=task_id)
        return JobStatus.FAILED
    except Exception as error:
        logger.exception("job %s failed", job_id)
        job_claims.mark_failed(sessions, job_id, job_claims.failure_message(error), settings, task_id=task_id)
        raise


def _run(sessions: Sessions, job_id: int, settings: Settings, heartbeat: job_claims.Heartbeat) -> None:
    started = time.perf_counter()
    with session_scope(sessions) as session:
        job = session.scalars(
            select(AuditJob).options(joinedload(AuditJob.dataset_version)).where(AuditJob.id == job_id)
        ).one()
        config = resolved_weights(_audit_config(job.config), settings)
        trusted = reaudits.job_trusted_set(job)  # reviewers' verdicts, with use_verdicts_as_trusted
        attempts = job_claims.attempts(job)
        recoveries = job_claims.recoveries(job)
        version = job.dataset_version
        samples = session.execute(
            select(Sample.sample_id, Sample.label)
            .where(Sample.dataset_version_id == version.id)
            .order_by(Sample.sample_index)
        ).all()
        warm, warm_note = warm_start(session, job, config, settings) if job.warm_start else (None, None)
    artifacts = job_artifacts(settings, job)
    _enter_stage(heartbeat, "loading the dataset")
    dataset = _load_version(settings, version, samples)
    load_seconds = time.perf_counter() - started

    def keep_noisy_labels(labels: NoisyLabels) -> None:
        artifacts.write_labels(labels)
        heartbeat.touch(result_paths=artifacts.names)

    writer = _EpochWriter(sessions, job_id, heartbeat)
    result = run_audit(
        dataset,
        config,
        on_epoch=writer.on_epoch,
        on_progress=writer.on_progress,
        checkpoint_path=artifacts.checkpoint_path(),
        should_stop=heartbeat.should_stop,
        warm_start=warm,
        noisy_labels=artifacts.read_labels(),
        on_noise=keep_noisy_labels,
        trusted=trusted,
        on_stage=lambda stage: _enter_stage(heartbeat, stage),
        embeddings_dir=embeddings_dir(settings.data_dir),
    )
    _enter_stage(heartbeat, "storing the results")
    if result.final_probs is not None:  # before the model: readers that find the model find these
        artifacts.write_probabilities(ClassProbabilities(final=result.final_probs, out_of_sample=result.oos_probs))
    artifacts.write_model(result.model.state_dict())
    timings = {
        **result.timings,
        "load_seconds": load_seconds,
        "dynamics_write_seconds": writer.write_seconds,
        "wall_seconds": time.perf_counter() - started,
    }
    with session_scope(sessions) as session:
        finished = {"status": JobStatus.SUCCEEDED, "finished_at": utcnow(), "eta_seconds": 0.0, "epoch": config.epochs}
        if writer.total_steps is not None:  # None when every epoch was done before this execution
            finished["step"] = writer.total_steps
        summary = _summary(result, config, timings, attempts)
        if recoveries:
            summary[job_claims.RECOVERIES] = recoveries
        if job.warm_start:
            summary["warm_start"] = warm_note
        if not heartbeat.touch(session, **finished, result=summary, result_paths=artifacts.names):
            raise AuditCancelled("the job stopped being this execution's before its results were stored")
        write_scores(session, job_id, result.scores, result.default_scores, result.rank)
        write_trajectory(session, job_id, result.trajectory)
        write_metrics(session, job_id, metric_rows(result.detection) if result.detection else [])
        if job.previous_job_id is not None:
            _announce_reaudit(session, job_id, artifacts)
    artifacts.remove_checkpoint()


def _enter_stage(heartbeat: job_claims.Heartbeat, stage: str) -> None:
    """Show the job's new stage, or stop here when the job stopped being this execution's."""
    if not heartbeat.set_stage(stage):
        raise AuditCancelled(f"the job stopped being this execution's before {stage}")


class _EpochWriter:
    """The engine's callbacks: every epoch's dynamics with the progress in one transaction, and
    throttled progress updates in between."""

    def __init__(self, sessions: Sessions, job_id: int, heartbeat: job_claims.Heartbeat):
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


def _announce_reaudit(session: Session, job_id: int, artifacts: JobArtifacts) -> None:
    """Queue the webhook call of a finished re-audit (in the transaction that finishes the job)."""
    job = session.get(AuditJob, job_id, options=[joinedload(AuditJob.dataset_version)])
    report = reaudits.reaudit_report(session, job, artifacts, limit=WEBHOOK_LISTED_SAMPLES)
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
    """The version's samples: its shard or segments of shards, memory-mapped (the training reads
    batches from them, see `core.engine.Inputs`), with the ids and labels of its sample rows; or,
    for a version without any, its blob as a dataset, checked against its sample rows (same ids,
    order, labels)."""
    from core.services import version_samples

    x = version_samples.open_samples(version, settings)
    if x is not None:
        import numpy as np

        if len(x) != len(samples):
            raise DatasetError(
                f"dataset version {version.id} has {len(samples)} sample rows but its samples hold {len(x)}"
            )
        return AuditDataset(
            name=f"dataset-version-{version.id}", modality=version.modality, x=x,
            y=np.fromiter((label for _, label in samples), dtype=np.int64, count=len(samples)),
            class_names=list(version.class_names), sample_ids=[sample_id for sample_id, _ in samples],
            is_mislabeled=version_samples.known_flags(version, settings), meta={"format": version.format},
        )  # fmt: skip
    with version_file_errors(version, settings):  # the job's owner reads the error: no blob path
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
        "num_trusted": None if result.trusted is None else len(result.trusted),  # held out as the validation split
        "validation_scoring": "validation samples are scored out of sample, at the end of every epoch",
        "default_score": result.default_score,
        "noise": config.inject_noise,
        "num_known_mislabeled": None if flags is None else int(flags.sum()),
        "test_metrics": result.test_metrics,
        "timings": {name: round(float(seconds), 4) for name, seconds in timings.items()},
    }
