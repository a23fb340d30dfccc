"""Which execution runs a job: claiming it, keeping the claim alive, and what happens to a job
whose execution failed, lost its claim or went silent.

A job row moves queued → running → succeeded | failed | cancelled. An execution *claims* the row
(status running, `celery_task_id` = its task id, `heartbeat_at` = now) and keeps the claim alive
by refreshing the heartbeat while it trains (`Heartbeat`). Every write it makes afterwards is
conditional on still holding the claim, so a job cancelled by the API, or taken over by another
execution, stops at the next check without touching the row again.

- A running job can be claimed again by a redelivery of the same task (the broker gives a message
  to one consumer at a time, so the previous holder is gone) or by any execution once its
  heartbeat is older than `settings.heartbeat_timeout_s`.
- `reap_stuck_jobs` (run by beat every `settings.resolved_reap_interval_s`) covers the messages
  no broker redelivers in time: kombu's SQLAlchemy transport never redelivers the message of a
  killed worker, and Redis does so only after the visibility timeout, which is longer than the
  longest job. A running job with a stale heartbeat goes back to queued and its task is sent
  again, up to `MAX_ATTEMPTS` claims; after that it is marked failed. The job shows it: its
  `result` holds `stage` (what the execution is doing, or "requeued: ..." after a reap) and
  `recoveries` (one line per lost worker), read by GET /jobs/{id}.
- A queued job still waiting `settings.resend_waiting_after_s` after it was created (or requeued
  by the reaper) has its task sent again, and again after twice that wait, four times, ...: a
  broker restarted without persistence loses the messages it held, the copy too if it restarts
  again. A job that only waits its turn behind long ones so gets a copy per doubling of its wait;
  a copy of a message that was only waiting finds the job claimed, or done, and does nothing.
- An execution notices a cancel (or a takeover) within `CANCEL_CHECK_INTERVAL_S` of its next
  check (`Heartbeat.should_stop`), which the audit asks for at every training step, between and
  inside cross-fit folds and between the phases after training.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.errors import AuditError
from core.services.artifacts import job_artifacts
from core.settings import Settings
from core.store import AuditJob, JobStatus, session_scope
from core.store.models import utcnow

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# How stale an execution's knowledge of its own claim may be when it is asked whether to stop.
CANCEL_CHECK_INTERVAL_S = 1.0
STAGE = "stage"  # the keys of the job's `result` that tell how a running job is doing
RECOVERIES = "recoveries"
RESENT_IN_ATTEMPT = "resent_in_attempt"  # the attempt whose waiting message the reaper last sent again
RESENDS = "resends_in_attempt"  # how many times it sent it in that attempt
QUEUED_AT = "queued_at"  # when the reaper put the job back in the queue, after its worker was lost

Sessions = sessionmaker[Session]


def claim(sessions: Sessions, job_id: int, task_id: str, settings: Settings) -> JobStatus | None:
    """Claim the job for the execution `task_id` if it is queued, or running under that task or
    with a stale heartbeat; returns the job's status afterwards (RUNNING once claimed; None for a
    job that does not exist)."""
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
        job.result = {**(job.result or {}), "attempts": attempts(job) + 1, STAGE: "starting"}
        return JobStatus.RUNNING


def attempts(job: AuditJob) -> int:
    """How many times the job was claimed."""
    return int((job.result or {}).get("attempts", 0))


def recoveries(job: AuditJob) -> list[str]:
    """What the reaper recorded each time the job's worker was lost, oldest first."""
    return list((job.result or {}).get(RECOVERIES, []))


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
        self._confirmed_at = time.monotonic()  # when the claim was last seen held

    def should_stop(self) -> bool:
        """Whether the execution must stop (cancelled, or taken over): asks the database when
        the claim was last confirmed more than `CANCEL_CHECK_INTERVAL_S` ago, so it is cheap to
        call at every step. A plain callable for the audit, which knows nothing of databases."""
        if not self.lost.is_set() and time.monotonic() - self._confirmed_at >= CANCEL_CHECK_INTERVAL_S:
            self.touch()
        return self.lost.is_set()

    def set_stage(self, stage: str) -> bool:
        """Show what the execution is doing (the job's `result["stage"]`); False once the claim is lost."""
        with session_scope(self.sessions) as session:
            job = session.scalars(select(AuditJob).where(self._held()).with_for_update()).one_or_none()
            if job is None:
                self.lost.set()
                return False
            job.result = {**(job.result or {}), STAGE: stage}
            job.heartbeat_at = utcnow()
        self._confirmed_at = time.monotonic()
        return True

    def _held(self):
        return (
            (AuditJob.id == self.job_id)
            & (AuditJob.status == JobStatus.RUNNING)
            & (AuditJob.celery_task_id == self.task_id)
        )

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
        held = session.execute(update(AuditJob).where(self._held()).values(heartbeat_at=utcnow(), **values)).rowcount
        if not held:
            self.lost.set()
        else:
            self._confirmed_at = time.monotonic()
        return bool(held)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if not self.touch():
                    return
            except Exception:
                logger.exception("heartbeat of job %s failed", self.job_id)


def failure_message(error: BaseException) -> str:
    """What a failed job records, which its owner reads: the message of an expected failure (an
    `AuditError`, written for users), else only the exception's class; the text of a database or
    file error (SQL, row values, paths) belongs in the worker's log, not in the job."""
    if isinstance(error, AuditError):
        return error.message
    return f"internal error ({type(error).__name__}) while running the audit; the worker's log has the details"


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
        job = session.get(AuditJob, job_id) if changed else None
    if job is not None:
        job_artifacts(settings, job).remove_checkpoint()
    return bool(changed)


def settle_lost_claim(sessions: Sessions, job_id: int, settings: Settings) -> JobStatus | None:
    """After an execution lost its claim: a cancelled job gets its finish time and loses its
    checkpoint; a job taken over or re-queued is left to its new execution. Returns the job's
    status (None for a job that is gone)."""
    with session_scope(sessions) as session:
        job = session.get(AuditJob, job_id)
        if job is None:
            return None
        if job.status is JobStatus.CANCELLED:
            job.finished_at = job.finished_at or utcnow()
            job.eta_seconds = None
    if job.status is JobStatus.CANCELLED:
        job_artifacts(settings, job).remove_checkpoint()
    return job.status


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
            job_artifacts(settings, job).remove_checkpoint()
    reaped["requeued"] += resend_waiting_jobs(sessions, settings, requeue)
    if candidates or reaped["requeued"]:
        logger.warning("reaped stuck jobs: %s", reaped)
    return reaped


def resend_waiting_jobs(sessions: Sessions, settings: Settings, requeue: Callable[[int], None]) -> list[int]:
    """Send again the task of each job queued (since it was created, or requeued after its worker
    was lost) for longer than `settings.resend_waiting_after_s` × 2^k, k the times it was sent
    again in this attempt; each resend is recorded in its `recoveries`. Returns their ids."""
    now = utcnow()
    first_wait = timedelta(seconds=settings.resend_waiting_after_s)
    waiting = (AuditJob.status == JobStatus.QUEUED) & (AuditJob.created_at < now - first_wait)
    with session_scope(sessions) as session:
        rows = session.execute(select(AuditJob.id, AuditJob.created_at, AuditJob.result).where(waiting)).all()
    resent = []
    for job_id in [job_id for job_id, created, result in rows if _resend_due(created, result or {}, now, first_wait)]:
        with session_scope(sessions) as session:
            locked = select(AuditJob).where(AuditJob.id == job_id, waiting).with_for_update()
            job = session.scalars(locked).one_or_none()
            result = (job.result or {}) if job is not None else {}
            if job is None or not _resend_due(job.created_at, result, now, first_wait):
                continue
            sends = _resends_in_attempt(result) + 1
            waited = (now - _queued_since(job.created_at, result)).total_seconds()
            note = (f"still queued after {waited:.0f} s (its message may have been lost); "
                    f"sent again ({sends} in this attempt) at {now:%Y-%m-%d %H:%M:%S} UTC")
            job.result = {**result, RESENT_IN_ATTEMPT: attempts(job), RESENDS: sends,
                          RECOVERIES: [*recoveries(job), note]}
            requeue(job.id)  # before the commit, as `reap_stuck_jobs` sends
        resent.append(job_id)
    return resent


def _queued_since(created_at: datetime, result: dict) -> datetime:
    """When the job was last put in the queue: its creation, or the reaper's requeue."""
    return datetime.fromisoformat(result[QUEUED_AT]) if QUEUED_AT in result else created_at


def _resends_in_attempt(result: dict) -> int:
    if result.get(RESENT_IN_ATTEMPT) != int(result.get("attempts", 0)):
        return 0
    return int(result.get(RESENDS, 1))  # a job resent before the count was kept was resent once


def _resend_due(created_at: datetime, result: dict, now: datetime, first_wait: timedelta) -> bool:
    """Whether a queued job has waited long enough for its next resend in this attempt."""
    return now - _queued_since(created_at, result) > first_wait * 2 ** _resends_in_attempt(result)


def _reap(job: AuditJob, requeue: Callable[[int], None]) -> str:
    claims = attempts(job)
    if claims >= MAX_ATTEMPTS:
        job.status, job.finished_at, job.eta_seconds = JobStatus.FAILED, utcnow(), None
        job.error = f"the job's worker stopped responding {claims} times (last heartbeat {job.heartbeat_at})"
        return "failed"
    last_beat = job.heartbeat_at
    silent = "no heartbeat" if last_beat is None else f"no heartbeat since {last_beat:%Y-%m-%d %H:%M:%S} UTC"
    lost = f"worker lost at epoch {job.epoch} ({silent})"
    job.result = {
        **(job.result or {}),
        STAGE: f"requeued: {lost}; attempt {claims + 1} of {MAX_ATTEMPTS} resumes from the last checkpoint",
        RECOVERIES: [*recoveries(job), f"{lost}; requeued at {utcnow():%Y-%m-%d %H:%M:%S} UTC"],
        QUEUED_AT: utcnow().isoformat(),
    }
    job.status = JobStatus.QUEUED
    requeue(job.id)
    return "requeued"


def _stale_condition(settings: Settings):
    stale_before = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s)
    return (AuditJob.status == JobStatus.RUNNING) & or_(
        AuditJob.heartbeat_at.is_(None), AuditJob.heartbeat_at < stale_before
    )
