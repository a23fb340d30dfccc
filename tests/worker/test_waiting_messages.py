"""Messages a broker lost before any worker took them (a Redis restarted without persistence),
on SQLite and Postgres: a queued job, or an ingest not started, still waiting after
`resend_waiting_after_s` has its task sent again by the reapers (again after twice the wait, for a
copy lost too), and a copy completes it. A copy of a message that was only waiting does nothing:
the job or ingest runs once."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from core.services.audit_runs import execute_job
from core.services.ingest_reaper import IngestHeartbeat, reap_lost_ingests, requeued_path
from core.services.job_claims import reap_stuck_jobs
from core.store import AuditJob, DatasetVersion, JobStatus, Sample, SampleEpoch, session_scope
from core.store.models import utcnow


@pytest.fixture
def settings(settings):
    """Jobs and ingests that earlier tests leave queued in the shared database may be resent by
    these tests' reapers too, so the tests look for their own in what is resent."""
    return settings.model_copy(update={"resend_waiting_after_s": 60, "ingest_stale_s": 3})


def _date_back(sessions, model, row_id: int, seconds: float) -> None:
    with session_scope(sessions) as session:
        dated = update(model).where(model.id == row_id).values(created_at=utcnow() - timedelta(seconds=seconds))
        session.execute(dated)


def _epoch_rows(sessions, job_id: int) -> int:
    with session_scope(sessions) as session:
        return session.scalar(select(func.count()).select_from(SampleEpoch).where(SampleEpoch.job_id == job_id))


def test_a_job_whose_message_was_lost_is_sent_again_and_runs_once(sessions, settings, make_job, n):
    lost, fresh = make_job(), make_job()
    wait = settings.resend_waiting_after_s
    _date_back(sessions, AuditJob, lost, wait + 1)
    sent: list[int] = []

    def reap() -> list[int]:
        return _reaped_of(reap_stuck_jobs(sessions, settings, requeue=sent.append), lost, fresh)

    assert reap() == [lost]
    assert reap() == []  # the next resend waits twice as long
    _date_back(sessions, AuditJob, lost, 2 * wait - 5)
    assert reap() == []
    _date_back(sessions, AuditJob, lost, 2 * wait + 1)  # the copy was lost too
    assert reap() == [lost]
    assert reap() == []

    assert sent.count(lost) == 2
    with session_scope(sessions) as session:
        notes = session.get(AuditJob, lost).result["recoveries"]
        assert len(notes) == 2 and "sent again (2 in this attempt)" in notes[1]
    assert execute_job(sessions, lost, settings) is JobStatus.SUCCEEDED  # the copy sent
    assert _epoch_rows(sessions, lost) == 3 * n
    # the original message, had it only been waiting, finds the job done
    assert execute_job(sessions, lost, settings) is JobStatus.SUCCEEDED
    assert _epoch_rows(sessions, lost) == 3 * n
    with session_scope(sessions) as session:
        assert session.get(AuditJob, fresh).status is JobStatus.QUEUED


def test_a_job_requeued_after_its_worker_was_lost_waits_again_before_it_is_resent(sessions, settings, make_job):
    """The wait counts from the requeue, and the doubling starts again with the new attempt."""
    job_id = make_job()
    _date_back(sessions, AuditJob, job_id, settings.resend_waiting_after_s + 1)
    with session_scope(sessions) as session:  # claimed, then its worker was lost
        job = session.get(AuditJob, job_id)
        job.status, job.celery_task_id, job.result = JobStatus.RUNNING, "lost-worker", {"attempts": 1}
        job.heartbeat_at = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s + 1)
    sent: list[int] = []

    def reap() -> list[int]:
        return _reaped_of(reap_stuck_jobs(sessions, settings, requeue=sent.append), job_id)

    assert reap() == [job_id]
    assert reap() == []  # requeued just now

    with session_scope(sessions) as session:  # the requeued message waited, and was lost too
        job = session.get(AuditJob, job_id)
        queued_at = utcnow() - timedelta(seconds=settings.resend_waiting_after_s + 1)
        job.result = {**job.result, "queued_at": queued_at.isoformat()}
    assert reap() == [job_id]
    assert reap() == []
    assert sent.count(job_id) == 2


def _reaped_of(reaped: dict[str, list[int]], *job_ids: int) -> list[int]:
    """Which of `job_ids` the reap sent again (jobs other tests left may be among the rest)."""
    assert not set(reaped["failed"]) & set(job_ids)
    return [job_id for job_id in reaped["requeued"] if job_id in job_ids]


def _samples(sessions, version_id: int) -> int:
    with session_scope(sessions) as session:
        return session.scalar(select(func.count()).select_from(Sample).where(Sample.dataset_version_id == version_id))


def test_an_ingest_whose_message_was_lost_is_sent_again_and_completes(
    sessions, settings, start_upload, ingest_task, digits_pngs
):
    (lost, _, _), (fresh, _, _) = start_upload(), start_upload()
    wait = settings.resend_waiting_after_s
    _date_back(sessions, DatasetVersion, lost, wait + 1)
    sent: list[int] = []
    mark = requeued_path(settings, lost)

    def reap() -> dict[str, list[int]]:
        return reap_lost_ingests(sessions, settings, requeue=sent.append)

    def last_sent_ago(seconds: float) -> None:
        os.utime(mark, (time.time() - seconds, time.time() - seconds))

    assert reap() == {"requeued": [lost], "failed": []}
    assert reap() == {"requeued": [], "failed": []}  # the next send waits as long again
    last_sent_ago(wait + 1)  # that copy was lost too
    assert reap() == {"requeued": [lost], "failed": []}
    last_sent_ago(2 * wait - 5)  # then twice as long
    assert reap() == {"requeued": [], "failed": []}
    last_sent_ago(2 * wait + 1)
    assert reap() == {"requeued": [lost], "failed": []}

    assert sent == [lost] * 3 and mark.read_text() == "3"
    assert ingest_task(sent[0]) == "ready"
    assert _samples(sessions, lost) == len(digits_pngs) and not mark.exists()
    assert ingest_task(lost) == "ready" and _samples(sessions, lost) == len(digits_pngs)  # the original, late
    with session_scope(sessions) as session:
        assert session.get(DatasetVersion, fresh).status == "ingesting"


def test_a_copy_of_an_ingest_task_that_arrives_while_it_runs_does_nothing(
    sessions, settings, start_upload, ingest_task, digits_pngs
):
    version_id, _, _ = start_upload()
    with IngestHeartbeat(settings, version_id) as running:  # the first run, beating
        assert ingest_task(version_id) == "ingesting"
        assert running.path.exists() and _samples(sessions, version_id) == 0
    assert ingest_task(version_id) == "ready" and _samples(sessions, version_id) == len(digits_pngs)


def test_a_resend_the_broker_refuses_leaves_the_count_and_the_wait_as_they_were(sessions, settings, start_upload):
    version_id, _, _ = start_upload()
    wait = settings.resend_waiting_after_s
    _date_back(sessions, DatasetVersion, version_id, wait + 1)
    mark = requeued_path(settings, version_id)
    assert reap_lost_ingests(sessions, settings, requeue=lambda _: None)["requeued"] == [version_id]
    sent_long_ago = time.time() - wait - 1
    os.utime(mark, (sent_long_ago, sent_long_ago))

    def refuse(_version_id: int) -> None:
        raise ConnectionError("the broker is down")

    with pytest.raises(ConnectionError):
        reap_lost_ingests(sessions, settings, requeue=refuse)
    assert mark.read_text() == "1" and mark.stat().st_mtime == pytest.approx(sent_long_ago)
    sent: list[int] = []
    assert reap_lost_ingests(sessions, settings, requeue=sent.append)["requeued"] == [version_id]
    assert sent == [version_id] and mark.read_text() == "2"
