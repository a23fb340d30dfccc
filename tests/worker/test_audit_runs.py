"""execute_job and the reaper on real databases with real (tiny) audits of a digits subset, no broker."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

import numpy as np
import pytest
import torch
from sqlalchemy import func, select, text, update

from core.audit import AuditConfig, run_audit
from core.services.artifacts import CHECKPOINT_FILE, LocalJobArtifacts
from core.services.audit_runs import execute_job
from core.services.job_claims import MAX_ATTEMPTS, claim, reap_stuck_jobs
from core.store import AuditJob, JobMetric, JobStatus, LilawTrajectoryPoint, SampleEpoch, SampleScore, session_scope
from core.store.models import utcnow


def load_job(sessions, job_id) -> AuditJob:
    with sessions() as session:
        return session.get(AuditJob, job_id)


def rows_per_epoch(sessions, job_id) -> dict[int, tuple[int, int]]:
    """epoch -> (rows, distinct sample indexes)."""
    with sessions() as session:
        return {
            epoch: (rows, distinct)
            for epoch, rows, distinct in session.execute(
                select(SampleEpoch.epoch, func.count(), func.count(SampleEpoch.sample_index.distinct()))
                .where(SampleEpoch.job_id == job_id)
                .group_by(SampleEpoch.epoch)
            )
        }


def wait_for(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_job_stores_every_epoch_its_scores_metrics_model_and_injected_labels(sessions, settings, make_job, n):
    job_id = make_job(inject_noise="uniform:0.3")

    assert execute_job(sessions, job_id, settings) is JobStatus.SUCCEEDED

    job = load_job(sessions, job_id)
    assert job.status is JobStatus.SUCCEEDED and job.error is None
    assert job.started_at <= job.finished_at and job.heartbeat_at is not None
    assert (job.epoch, job.total_epochs, job.step) == (3, 3, job.total_steps)
    assert rows_per_epoch(sessions, job_id) == {epoch: (n, n) for epoch in (1, 2, 3)}
    with sessions() as session:
        ranks = session.scalars(select(SampleScore.rank).where(SampleScore.job_id == job_id)).all()
        metric_scores = set(session.scalars(select(JobMetric.score).where(JobMetric.job_id == job_id)))
        trajectory_epochs = set(
            session.scalars(select(LilawTrajectoryPoint.epoch).where(LilawTrajectoryPoint.job_id == job_id))
        )
    assert sorted(ranks) == list(range(1, n + 1))
    assert {"w_alpha", "aum", "loss"} <= metric_scores
    assert trajectory_epochs == {1, 2, 3}

    summary = job.result
    assert summary["attempts"] == 1 and summary["num_samples"] == n
    assert summary["num_known_mislabeled"] == round(0.3 * n) and summary["noise"] == "uniform:0.3"
    assert {"model", "device", "default_score", "timings"} <= set(summary)

    assert job.result_paths == {
        "labels": f"jobs/{job_id}/labels.npz",
        "model": f"jobs/{job_id}/model.pt",
        "probabilities": f"jobs/{job_id}/probabilities.npz",
    }
    labels = LocalJobArtifacts(settings.data_dir, job).read_labels()
    assert labels.is_mislabeled.sum() == round(0.3 * n)
    assert np.array_equal(labels.labels != labels.true_labels, labels.is_mislabeled)
    state = torch.load(settings.data_dir / job.result_paths["model"], weights_only=True)
    assert all(isinstance(tensor, torch.Tensor) for tensor in state.values())
    assert not (settings.job_dir / str(job_id) / CHECKPOINT_FILE).exists()


def test_finished_and_live_jobs_are_left_alone(sessions, settings, make_job):
    finished, live = make_job(), make_job()
    with session_scope(sessions) as session:
        session.get(AuditJob, finished).status = JobStatus.CANCELLED
        job = session.get(AuditJob, live)
        job.status, job.celery_task_id, job.heartbeat_at = JobStatus.RUNNING, "other-worker", utcnow()

    assert execute_job(sessions, finished, settings) is JobStatus.CANCELLED
    assert execute_job(sessions, live, settings) is JobStatus.RUNNING
    assert execute_job(sessions, 10**6, settings) is None
    assert load_job(sessions, live).celery_task_id == "other-worker"
    assert rows_per_epoch(sessions, finished) == rows_per_epoch(sessions, live) == {}


def test_an_expected_failure_records_its_message(sessions, settings, make_job, tmp_path):
    job_id = make_job(blob_uri=str(tmp_path / "gone.npz"))

    assert execute_job(sessions, job_id, settings) is JobStatus.FAILED

    job = load_job(sessions, job_id)
    assert job.status is JobStatus.FAILED and job.finished_at is not None
    assert job.error == "the file of dataset version 1 does not exist or is not a file"  # not its path


def test_an_unexpected_failure_records_its_type_only_and_propagates(sessions, settings, make_job):
    job_id = make_job(config={"epochs": "three"})

    with pytest.raises(TypeError):
        execute_job(sessions, job_id, settings)

    job = load_job(sessions, job_id)
    assert job.status is JobStatus.FAILED and job.error.startswith("internal error (TypeError)")


@contextmanager
def epoch_rows_refused(sessions, job_id: int):
    """The database refuses the job's per-epoch rows, as a broken or constrained database does:
    a CHECK constraint on Postgres (its error names the table, the constraint, the COPY and the
    row), a trigger on SQLite (SQLAlchemy's error carries the INSERT and its parameters)."""
    with session_scope(sessions) as session:
        postgres = session.get_bind().dialect.name == "postgresql"
        if postgres:
            session.execute(
                text(f"ALTER TABLE sample_epochs ADD CONSTRAINT refuse_job_{job_id} CHECK (job_id <> {job_id})")
            )
        else:
            session.execute(
                text(
                    f"CREATE TRIGGER refuse_job_{job_id} BEFORE INSERT ON sample_epochs "
                    f"WHEN NEW.job_id = {job_id} BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed'); END"
                )
            )
    try:
        yield
    finally:
        with session_scope(sessions) as session:
            if postgres:
                session.execute(text(f"ALTER TABLE sample_epochs DROP CONSTRAINT refuse_job_{job_id}"))
            else:
                session.execute(text(f"DROP TRIGGER refuse_job_{job_id}"))


def test_a_database_error_shows_a_generic_message_and_logs_the_detail(sessions, settings, make_job, caplog):
    job_id = make_job(epochs=1)

    with epoch_rows_refused(sessions, job_id), caplog.at_level(logging.ERROR, logger="core.services.audit_runs"):
        with pytest.raises(Exception, match="constraint") as raised:  # the driver's own error, raw
            execute_job(sessions, job_id, settings)

    job = load_job(sessions, job_id)
    assert job.status is JobStatus.FAILED
    kind = type(raised.value).__name__
    assert job.error == f"internal error ({kind}) while running the audit; the worker's log has the details"
    for internal in ("sample_epochs", "INSERT", "COPY", "refuse_job", "constraint", "Failing row", "SQL"):
        assert internal not in job.error
    [logged] = [record for record in caplog.records if f"job {job_id} failed" in record.getMessage()]
    assert logged.levelno == logging.ERROR and logged.exc_info[1] is raised.value


def test_what_escapes_the_task_shows_its_class_only_and_the_log_has_the_rest(
    sessions, settings, make_job, monkeypatch, caplog
):
    from worker import tasks

    job_id = make_job()
    assert claim(sessions, job_id, "task-1", settings) is JobStatus.RUNNING
    monkeypatch.setattr(tasks, "job_sessions", lambda: sessions)
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    escaped = OSError(13, "Permission denied", str(settings.blob_dir / f"{'a' * 64}.npz"))

    with caplog.at_level(logging.ERROR, logger="worker.tasks"):
        tasks.audit.on_failure(escaped, "task-1", [job_id], {}, None)

    job = load_job(sessions, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == "internal error (PermissionError) while running the audit; the worker's log has the details"
    [logged] = [record for record in caplog.records if f"job {job_id} failed" in record.getMessage()]
    assert "a" * 64 in logged.getMessage() and logged.exc_info[1] is escaped


def test_a_job_cancelled_while_it_trains_ends_cancelled(sessions, settings, make_job):
    job_id = make_job(epochs=50)
    outcome = []
    runner = threading.Thread(target=lambda: outcome.append(execute_job(sessions, job_id, settings)))
    runner.start()
    wait_for(lambda: rows_per_epoch(sessions, job_id), what="the first epoch")
    with session_scope(sessions) as session:
        session.execute(update(AuditJob).where(AuditJob.id == job_id).values(status=JobStatus.CANCELLED))
    runner.join(timeout=60)

    assert outcome == [JobStatus.CANCELLED]
    job = load_job(sessions, job_id)
    assert job.status is JobStatus.CANCELLED and job.finished_at is not None and job.error is None
    assert len(rows_per_epoch(sessions, job_id)) < 50
    with sessions() as session:
        assert session.scalar(select(func.count()).where(SampleScore.job_id == job_id)) == 0
    assert not (settings.job_dir / str(job_id) / CHECKPOINT_FILE).exists()


def test_a_killed_execution_is_resumed_from_its_checkpoint_by_the_redelivered_task(
    sessions, settings, make_job, db_url, n
):
    job_id = make_job(epochs=4, inject_noise="uniform:0.3")
    checkpoint = settings.job_dir / str(job_id) / CHECKPOINT_FILE
    code = (
        "import sys; from core.settings import Settings; from core.services.audit_runs import execute_job;"
        "from core.store import make_engine, make_session_factory;"
        "sessions = make_session_factory(make_engine(sys.argv[1], sqlite_begin='IMMEDIATE'));"
        "execute_job(sessions, int(sys.argv[2]), Settings(data_dir=sys.argv[3]), task_id='task-1')"
    )
    worker = subprocess.Popen([sys.executable, "-c", code, db_url, str(job_id), str(settings.data_dir)])
    try:
        wait_for(lambda: checkpoint.exists() or worker.poll() is not None, timeout=120, what="a checkpoint")
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    done = torch.load(checkpoint, weights_only=True)["epoch"]
    assert 1 <= done < 4
    labels_before = LocalJobArtifacts(settings.data_dir, load_job(sessions, job_id)).read_labels()
    # Mark the rows of the checkpointed epochs: a resumed run must not write them again.
    with session_scope(sessions) as session:
        checkpointed = (SampleEpoch.job_id == job_id) & (SampleEpoch.epoch <= done)
        session.execute(update(SampleEpoch).where(checkpointed).values(w_alpha=-1.0))

    assert execute_job(sessions, job_id, settings, task_id="task-1") is JobStatus.SUCCEEDED

    assert rows_per_epoch(sessions, job_id) == {epoch: (n, n) for epoch in range(1, 5)}
    with sessions() as session:
        marked_rows = (SampleEpoch.job_id == job_id) & (SampleEpoch.w_alpha == -1.0)
        marked = set(session.scalars(select(SampleEpoch.epoch).distinct().where(marked_rows)))
    assert marked == set(range(1, done + 1))
    job = load_job(sessions, job_id)
    assert job.result["attempts"] == 2
    labels_after = LocalJobArtifacts(settings.data_dir, job).read_labels()
    assert np.array_equal(labels_before.labels, labels_after.labels)


def test_the_reaper_requeues_stale_jobs_and_fails_them_after_the_last_attempt(sessions, settings, make_job):
    stale, exhausted, alive = make_job(), make_job(), make_job()
    long_ago = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s + 1)
    with session_scope(sessions) as session:
        states = ((stale, long_ago, 1), (exhausted, long_ago, MAX_ATTEMPTS), (alive, utcnow(), 1))
        for job_id, heartbeat, attempts in states:
            job = session.get(AuditJob, job_id)
            job.status, job.heartbeat_at, job.result = JobStatus.RUNNING, heartbeat, {"attempts": attempts}
    sent = []

    reaped = reap_stuck_jobs(sessions, settings, requeue=sent.append)

    assert reaped == {"requeued": [stale], "failed": [exhausted]} and sent == [stale]
    assert load_job(sessions, stale).status is JobStatus.QUEUED
    assert load_job(sessions, alive).status is JobStatus.RUNNING
    failed = load_job(sessions, exhausted)
    assert failed.status is JobStatus.FAILED and "stopped responding" in failed.error
    assert reap_stuck_jobs(sessions, settings, requeue=sent.append) == {"requeued": [], "failed": []}


def test_a_requeued_job_is_claimed_again_and_completes(sessions, settings, make_job, n):
    job_id = make_job()
    with session_scope(sessions) as session:
        job = session.get(AuditJob, job_id)
        job.status, job.celery_task_id = JobStatus.RUNNING, "dead-worker"
        job.heartbeat_at = utcnow() - timedelta(seconds=settings.heartbeat_timeout_s + 1)
    requeued = []
    reap_stuck_jobs(sessions, settings, requeue=requeued.append)

    assert execute_job(sessions, requeued[0], settings) is JobStatus.SUCCEEDED
    assert rows_per_epoch(sessions, job_id) == {epoch: (n, n) for epoch in (1, 2, 3)}


def test_a_job_whose_every_epoch_was_checkpointed_only_stores_its_results(sessions, settings, make_job, digits, n):
    job_id = make_job()
    with sessions() as session:
        config = AuditConfig.from_dict(session.get(AuditJob, job_id).config)
    run_audit(digits, config, checkpoint_path=settings.job_dir / str(job_id) / CHECKPOINT_FILE)

    assert execute_job(sessions, job_id, settings) is JobStatus.SUCCEEDED

    with sessions() as session:
        assert session.scalar(select(func.count()).where(SampleScore.job_id == job_id)) == n
    assert rows_per_epoch(sessions, job_id) == {}  # stored by the execution that checkpointed them
