"""Scheduled re-audits against real databases, with time advanced by hand (nothing sleeps): a due
schedule starts one re-audit of the latest version, compared with the newest succeeded job; a
schedule with nothing new skips; schedules change without a restart; two passes at once start a
run once; a job the broker refuses is marked failed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from core.audit import AuditConfig
from core.services import InvalidParameterError
from core.services.schedules import run_due_schedules, set_schedule
from core.store import AuditJob, AuditSchedule, DatasetVersion, JobStatus, session_scope

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # a Sunday
HOUR = timedelta(hours=1)


@pytest.fixture
def audited(sessions, make_job) -> tuple[int, int, int]:
    """(owner id, dataset id, job id) of a dataset whose only version has a succeeded audit."""
    job_id = make_job()
    with session_scope(sessions) as session:
        job = session.get(AuditJob, job_id, options=[joinedload(AuditJob.dataset_version)])
        job.status = JobStatus.SUCCEEDED
        return job.owner_id, job.dataset_version.dataset_id, job_id


def schedule(sessions, owner_id: int, dataset_id: int, **timing) -> AuditSchedule:
    with session_scope(sessions) as session:
        return set_schedule(session, owner_id, dataset_id, config=AuditConfig(epochs=1), now=T0, **timing)


def run(sessions, now: datetime, sent: list[int] | None = None):
    sent = [] if sent is None else sent
    return run_due_schedules(sessions, now=now, enqueue=sent.append)


def test_a_due_schedule_reaudits_the_new_version_once_and_then_skips(sessions, audited, add_version):
    owner_id, dataset_id, first_job = audited
    assert schedule(sessions, owner_id, dataset_id, interval_seconds=3600).next_run_at == T0 + HOUR
    add_version(dataset_id)
    sent: list[int] = []

    assert run(sessions, T0 + timedelta(minutes=59), sent) == []
    [started] = run(sessions, T0 + HOUR, sent)
    assert sent == [started.job_id]
    assert run(sessions, T0 + HOUR, sent) == []  # not due again until the next interval

    with session_scope(sessions) as session:
        job = session.get(AuditJob, started.job_id, options=[joinedload(AuditJob.dataset_version)])
        assert (job.dataset_version.version, job.previous_job_id, job.status) == (2, first_job, JobStatus.QUEUED)
        state = session.scalar(select(AuditSchedule).where(AuditSchedule.dataset_id == dataset_id))
        assert (state.last_run_at, state.next_run_at) == (T0 + HOUR, T0 + 2 * HOUR)
        assert state.last_outcome == f"started job {job.id}"
        job.status = JobStatus.SUCCEEDED

    [skipped] = run(sessions, T0 + 2 * HOUR, sent)
    assert skipped.job_id is None and skipped.outcome.startswith("nothing changed: version 2 is audited already")
    assert sent == [started.job_id]


def test_cron_schedules_run_at_their_utc_times_and_bad_timings_are_refused(sessions, audited):
    owner_id, dataset_id, _ = audited
    assert schedule(sessions, owner_id, dataset_id, cron="0 3 * * 1").next_run_at == datetime(2026, 11, 23, 3, tzinfo=UTC)
    for timing, message in (
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"interval_seconds": 5}, "at least 60 seconds"),
        ({"cron": "0 3 * * 1", "interval_seconds": 3600}, "not both"),
        ({}, "either a cron expression or an interval"),
    ):
        with pytest.raises(InvalidParameterError, match=message):
            schedule(sessions, owner_id, dataset_id, **timing)


def test_a_changed_schedule_applies_at_the_next_pass(sessions, audited, add_version):
    owner_id, dataset_id, _ = audited
    schedule(sessions, owner_id, dataset_id, interval_seconds=24 * 3600)
    add_version(dataset_id)
    assert run(sessions, T0 + HOUR) == []

    schedule(sessions, owner_id, dataset_id, interval_seconds=600)  # no restart of anything
    assert [run.job_id is not None for run in run(sessions, T0 + HOUR)] == [True]


def test_two_passes_at_once_start_a_due_run_once(sessions, audited, add_version):
    owner_id, dataset_id, _ = audited
    schedule(sessions, owner_id, dataset_id, interval_seconds=3600)
    add_version(dataset_id)
    start = threading.Barrier(2)

    def pass_() -> list:
        start.wait()
        return run(sessions, T0 + HOUR)

    with ThreadPoolExecutor(2) as pool:
        passes = [pool.submit(pass_) for _ in range(2)]
    runs = [started for done in passes for started in done.result()]  # re-raises what a pass raised
    assert len(runs) == 1
    with session_scope(sessions) as session:
        started = select(func.count()).select_from(AuditJob).join(DatasetVersion).where(
            DatasetVersion.dataset_id == dataset_id, AuditJob.schedule_id.is_not(None))
        assert session.scalar(started) == 1


def test_a_reaudit_the_broker_refuses_is_marked_failed(sessions, audited, add_version):
    owner_id, dataset_id, _ = audited
    schedule(sessions, owner_id, dataset_id, interval_seconds=3600)
    add_version(dataset_id)

    def refuse(job_id: int) -> None:
        raise ConnectionError("broker down")

    [started] = run_due_schedules(sessions, now=T0 + HOUR, enqueue=refuse)
    with session_scope(sessions) as session:
        job = session.get(AuditJob, started.job_id, options=[joinedload(AuditJob.dataset_version)])
        assert job.status is JobStatus.FAILED and "broker down" in job.error
