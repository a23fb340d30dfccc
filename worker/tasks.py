"""The worker's tasks: each takes an id, calls one service function and returns what it said."""

from __future__ import annotations

import logging
from functools import lru_cache

from celery import Task
from sqlalchemy.orm import Session, sessionmaker

from core.services import audit_runs, ingest, ingest_reaper, job_claims, previews, schedules, webhooks
from core.services.blobs import BlobStore
from core.settings import get_settings
from core.store import JobStatus, make_engine, make_session_factory
from worker.celery_app import (
    AUDIT_TASK,
    INGEST_TASK,
    REAP_INGESTS_TASK,
    REAP_TASK,
    SCHEDULES_TASK,
    SWEEP_BLOBS_TASK,
    WEBHOOKS_TASK,
    app,
)

logger = logging.getLogger(__name__)


@lru_cache
def job_sessions() -> sessionmaker[Session]:
    """This process's sessions (created on first use, so after the pool forks). On SQLite every
    transaction takes the write lock at BEGIN: the worker reads and then writes rows that the
    API and the heartbeat thread write too."""
    engine = make_engine(get_settings().resolved_database_url, sqlite_begin="IMMEDIATE")
    return make_session_factory(engine)


class AuditTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Whatever escaped the service (a time limit, a lost database) marks the job failed; the
        job shows a generic message, the log the exception."""
        logger.error("audit task %s of job %s failed: %s: %s", task_id, args[0], type(exc).__name__, exc, exc_info=exc)
        message = job_claims.failure_message(exc)
        job_claims.mark_failed(job_sessions(), args[0], message, get_settings(), task_id=task_id)


@app.task(bind=True, base=AuditTask, name=AUDIT_TASK)
def audit(self: AuditTask, job_id: int) -> str | None:
    status = audit_runs.execute_job(job_sessions(), job_id, get_settings(), task_id=self.request.id)
    if status is JobStatus.SUCCEEDED:
        deliver_webhooks.delay()  # a finished re-audit's webhook call, without waiting for beat
    return status


class IngestTask(Task):
    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        """Whatever escaped the ingest (a time limit, a lost database) fails it: the dataset shows
        a generic message, the log the exception."""
        logger.error("ingest task %s of version %s failed: %s: %s", task_id, args[0], type(exc).__name__, exc, exc_info=exc)
        message = f"the ingest failed unexpectedly ({type(exc).__name__})"
        ingest.fail_ingest(job_sessions(), get_settings(), args[0], message)


@app.task(bind=True, base=IngestTask, name=INGEST_TASK)
def ingest_version(self: IngestTask, version_id: int) -> str | None:
    """Read an uploaded file into its ingesting dataset version (`core.services.ingest`), beating
    while it runs: a lost worker's ingest is found by `reap_lost_ingests`."""
    settings = get_settings()
    try:
        with ingest_reaper.IngestHeartbeat(settings, version_id):
            status = ingest.run_ingest(job_sessions(), version_id, settings)
    except ingest_reaper.IngestRunningElsewhere:  # a copy of the task, sent by the reaper
        logger.info("ingest of dataset version %s is running in another task; this copy does nothing", version_id)
        return ingest.INGESTING
    if status == ingest.READY:  # the review queue's thumbnails, rendered here, not in a request
        previews.render_stored(job_sessions(), version_id, settings)
    return status


@app.task(name=REAP_TASK)
def reap_stuck_jobs() -> dict[str, list[int]]:
    return job_claims.reap_stuck_jobs(job_sessions(), get_settings(), requeue=audit.delay)


@app.task(name=REAP_INGESTS_TASK)
def reap_lost_ingests() -> dict[str, list[int]]:
    return ingest_reaper.reap_lost_ingests(job_sessions(), get_settings(), requeue=ingest_version.delay)


@app.task(name=SCHEDULES_TASK)
def run_due_schedules() -> list[dict]:
    runs = schedules.run_due_schedules(job_sessions(), enqueue=audit.delay)
    return [{"schedule_id": run.schedule_id, "job_id": run.job_id, "outcome": run.outcome} for run in runs]


@app.task(name=WEBHOOKS_TASK)
def deliver_webhooks() -> int:
    allow_private_hosts = get_settings().webhook_allow_private_hosts
    return len(webhooks.deliver_due(job_sessions(), allow_private_hosts=allow_private_hosts))


@app.task(name=SWEEP_BLOBS_TASK)
def sweep_orphan_blobs() -> dict[str, int]:
    """Blobs no dataset version refers to, and partial uploads, that a killed process left."""
    with job_sessions()() as session:
        report = BlobStore(get_settings()).sweep_orphans(session)
    return {"blobs": len(report.blobs), "partial_uploads": len(report.partial_uploads)}
