"""A job whose worker went silent shows it: the reaper re-queues it with a "worker lost" stage
and a line in `recoveries`, which the resumed run keeps in its summary. Real databases, no broker."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from core.services import job_claims
from core.services.audit_runs import execute_job
from core.settings import Settings
from core.store import AuditJob, JobStatus, session_scope
from core.store.models import utcnow


def job_row(sessions, job_id) -> AuditJob:
    with sessions() as session:
        return session.get(AuditJob, job_id)


def test_a_reaped_job_shows_its_lost_worker_until_and_after_it_completes(sessions, settings, make_job):
    job_id = make_job()
    assert job_claims.claim(sessions, job_id, "task-killed", settings) is JobStatus.RUNNING
    silent_since = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s + 1)
    with session_scope(sessions) as session:
        session.execute(update(AuditJob).where(AuditJob.id == job_id).values(heartbeat_at=silent_since, epoch=2))
    requeued: list[int] = []

    reaped = job_claims.reap_stuck_jobs(sessions, settings, requeue=requeued.append)

    assert job_id in reaped["requeued"] and requeued == [job_id]
    job = job_row(sessions, job_id)
    assert job.status is JobStatus.QUEUED
    assert job.result[job_claims.STAGE].startswith("requeued: worker lost at epoch 2 (no heartbeat since ")
    [lost] = job.result[job_claims.RECOVERIES]
    assert lost.startswith("worker lost at epoch 2") and "requeued at" in lost

    assert execute_job(sessions, job_id, settings, task_id="task-2") is JobStatus.SUCCEEDED
    done = job_row(sessions, job_id)
    assert done.result["attempts"] == 2 and done.result[job_claims.RECOVERIES] == [lost]
    assert job_claims.STAGE not in done.result  # a finished job has no stage


def test_the_default_intervals_bring_a_killed_workers_job_back_within_a_minute():
    defaults = Settings()
    # Worst case: the worker dies just after a heartbeat; the job is stale after the timeout and
    # the reaper's next pass comes at most one interval later.
    assert defaults.heartbeat_timeout_s + defaults.resolved_reap_interval_s <= 45
    assert defaults.heartbeat_timeout_s >= 5 * defaults.resolved_heartbeat_interval_s  # a few missed beats
