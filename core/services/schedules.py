"""Scheduled re-audits: one schedule per dataset (a cron expression or an interval) stored in the
database, and the periodic pass that starts the re-audits that are due.

Beat sends one task every `Settings.schedule_tick_s`; it calls `run_due_schedules`, which reads
the schedules from the database each time, so creating or changing a schedule needs no restart.
A due schedule starts a re-audit (`reaudits.start_reaudit`), or records why it skipped one, and
moves `next_run_at` to its next time after now: runs missed while nothing ticked are not
replayed one by one. Cron expressions have five fields and are read in UTC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cronsim import CronSim, CronSimError
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.audit import AuditConfig
from core.errors import AuditError
from core.services import InvalidParameterError, NotFoundError, jobs
from core.services.datasets import get_dataset, get_version
from core.services.reaudits import start_reaudit
from core.store.db import session_scope
from core.store.models import AuditJob, AuditSchedule, Dataset, utcnow

logger = logging.getLogger(__name__)

MIN_INTERVAL_S = 60


@dataclass(frozen=True)
class ScheduleRun:
    schedule_id: int
    dataset_id: int
    job_id: int | None  # the re-audit started; None when skipped
    outcome: str


def set_schedule(
    session: Session,
    owner_id: int,
    dataset_id: int,
    *,
    cron: str | None = None,
    interval_seconds: int | None = None,
    config: AuditConfig,
    warm_start: bool = False,
    enabled: bool = True,
    now: datetime | None = None,
) -> AuditSchedule:
    """Create or replace the dataset's schedule; its first run is the next time after `now`."""
    get_dataset(session, owner_id, dataset_id)
    if (cron is None) == (interval_seconds is None):
        raise InvalidParameterError("a schedule needs either a cron expression or an interval, not both")
    if interval_seconds is not None and interval_seconds < MIN_INTERVAL_S:
        raise InvalidParameterError(f"the interval must be at least {MIN_INTERVAL_S} seconds, got {interval_seconds}")
    config.validate()
    jobs.check_model_name(config.model, get_version(session, owner_id, dataset_id).modality)
    now = now or utcnow()
    schedule = session.scalar(select(AuditSchedule).where(AuditSchedule.dataset_id == dataset_id))
    if schedule is None:
        schedule = AuditSchedule(dataset_id=dataset_id)
        session.add(schedule)
    schedule.cron, schedule.interval_seconds = cron, interval_seconds
    schedule.config, schedule.warm_start, schedule.enabled = config.to_dict(), warm_start, enabled
    schedule.next_run_at = next_run_after(schedule, now)
    session.flush()
    return schedule


def get_schedule(session: Session, owner_id: int, dataset_id: int) -> AuditSchedule:
    get_dataset(session, owner_id, dataset_id)
    schedule = session.scalar(select(AuditSchedule).where(AuditSchedule.dataset_id == dataset_id))
    if schedule is None:
        raise NotFoundError(f"dataset {dataset_id} has no schedule")
    return schedule


def delete_schedule(session: Session, owner_id: int, dataset_id: int) -> None:
    session.delete(get_schedule(session, owner_id, dataset_id))
    session.flush()


def next_run_after(schedule: AuditSchedule, after: datetime) -> datetime:
    """The schedule's first time strictly after `after`."""
    if schedule.interval_seconds is not None:
        return after + timedelta(seconds=schedule.interval_seconds)
    try:
        return next(CronSim(schedule.cron, after.replace(microsecond=0)))
    except CronSimError as error:
        raise InvalidParameterError(f"invalid cron expression {schedule.cron!r}: {error}") from None


def run_due_schedules(
    sessions: sessionmaker[Session], *, now: datetime | None = None, enqueue: Callable[[int], None]
) -> list[ScheduleRun]:
    """Start the re-audit of every enabled schedule whose time has come, one schedule per
    transaction; `enqueue(job_id)` sends a started job to the workers after its transaction
    committed (a job that cannot be sent is marked failed). Two passes at once start each due
    run once: a schedule is locked while it is handled, and a pass skips locked schedules."""
    now = now or utcnow()
    with session_scope(sessions) as session:
        due = session.scalars(
            select(AuditSchedule.id)
            .where(AuditSchedule.enabled.is_(True), AuditSchedule.next_run_at <= now)
            .order_by(AuditSchedule.next_run_at)
        ).all()
    runs = []
    for schedule_id in due:
        with session_scope(sessions) as session:
            run = _run_schedule(session, schedule_id, now)
        if run is None:
            continue
        if run.job_id is not None:
            _send(sessions, run.job_id, enqueue)
        logger.info("schedule %s of dataset %s: %s", run.schedule_id, run.dataset_id, run.outcome)
        runs.append(run)
    return runs


def _run_schedule(session: Session, schedule_id: int, now: datetime) -> ScheduleRun | None:
    schedule = session.scalar(
        select(AuditSchedule)
        .where(AuditSchedule.id == schedule_id, AuditSchedule.enabled.is_(True), AuditSchedule.next_run_at <= now)
        .with_for_update(skip_locked=True)
    )
    if schedule is None:  # handled by another pass meanwhile
        return None
    owner_id = session.get(Dataset, schedule.dataset_id).owner_id
    try:
        config = AuditConfig.from_dict(schedule.config)
        started = start_reaudit(
            session, owner_id, schedule.dataset_id, config, warm_start=schedule.warm_start, schedule_id=schedule.id
        )
        outcome = started.skipped or f"started job {started.job.id}"
        job_id = None if started.job is None else started.job.id
    except (AuditError, TypeError, ValueError) as error:
        outcome, job_id = f"not started: {error}", None
    schedule.last_run_at, schedule.last_outcome = now, outcome[:200]
    schedule.next_run_at = next_run_after(schedule, now)
    return ScheduleRun(schedule.id, schedule.dataset_id, job_id, outcome)


def _send(sessions: sessionmaker[Session], job_id: int, enqueue: Callable[[int], None]) -> None:
    try:
        enqueue(job_id)
    except Exception as error:  # the broker is down: the job must not wait forever
        logger.exception("could not send re-audit job %s", job_id)
        with session_scope(sessions) as session:
            job = session.get(AuditJob, job_id)
            jobs.mark_failed(job, f"the job could not be sent to the workers: {error}")
