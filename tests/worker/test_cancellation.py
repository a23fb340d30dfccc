"""A cancelled job stops in whichever phase it is: training, cross-fit folds, scoring (cleanlab),
storing the results. Real databases and real (tiny) audits, no broker: `execute_job` in a thread,
cancelled by an UPDATE as the API's cancel does it."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select, update

from core.services import job_claims
from core.services.artifacts import CHECKPOINT_FILE
from core.services.audit_runs import execute_job
from core.store import AuditJob, JobStatus, SampleScore, session_scope

CROSS_FIT_FOLDS = 5
EPOCHS = 20
# Cancelled as fold 2 starts, an execution that only looks between folds trains that fold to its
# end (EPOCHS epochs, ~8 s here); one that looks at every step stops within a second or so.
STOPPED_WITHIN_S = 3.5


def job_row(sessions, job_id) -> AuditJob:
    with sessions() as session:
        return session.get(AuditJob, job_id)


def stage(sessions, job_id) -> str:
    return (job_row(sessions, job_id).result or {}).get(job_claims.STAGE, "")


def cancel(sessions, job_id) -> None:
    with session_scope(sessions) as session:
        session.execute(update(AuditJob).where(AuditJob.id == job_id).values(status=JobStatus.CANCELLED))


def wait_for(condition, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_cancelled_without_results(sessions, settings, job_id) -> None:
    job = job_row(sessions, job_id)
    assert job.status is JobStatus.CANCELLED and job.finished_at is not None and job.error is None
    with sessions() as session:
        assert session.scalar(select(func.count()).where(SampleScore.job_id == job_id)) == 0
    job_dir = settings.job_dir / str(job_id)
    assert not (job_dir / CHECKPOINT_FILE).exists()
    assert not job.result_paths or "model" not in job.result_paths


def test_a_job_cancelled_during_cross_fit_stops_within_an_epoch(sessions, settings, make_job):
    job_id = make_job(epochs=EPOCHS, cross_fit=CROSS_FIT_FOLDS, weighting="none")
    outcome: list[JobStatus | None] = []
    runner = threading.Thread(target=lambda: outcome.append(execute_job(sessions, job_id, settings)))
    runner.start()
    try:
        wait_for(lambda: stage(sessions, job_id) == f"cross-fitting: fold 2 of {CROSS_FIT_FOLDS}", what="fold 2")
        cancelled_at = time.monotonic()
        cancel(sessions, job_id)
        runner.join(timeout=STOPPED_WITHIN_S)
        stopped_after = time.monotonic() - cancelled_at
    finally:
        runner.join()
    assert stopped_after < STOPPED_WITHIN_S, f"the execution ran on for {stopped_after:.1f} s after the cancel"
    assert outcome == [JobStatus.CANCELLED]
    assert_cancelled_without_results(sessions, settings, job_id)


@pytest.mark.parametrize("phase", ["injecting noise", "training", "cross-fitting: fold 1 of 2", "scoring",
                                   "storing the results"])
def test_a_job_cancelled_as_a_phase_starts_stops_there(sessions, settings, make_job, monkeypatch, phase):
    """The cancel lands the moment the execution enters `phase` (a concurrent API request, timed
    by wrapping the real stage update), before anything of the phase is done."""
    job_id = make_job(epochs=2, cross_fit=2, inject_noise="instance:0.2")
    entered: list[str] = []
    set_stage = job_claims.Heartbeat.set_stage

    def cancel_on_entering(heartbeat, text: str) -> bool:
        entered.append(text)
        if text == phase:
            cancel(sessions, job_id)
        return set_stage(heartbeat, text)

    monkeypatch.setattr(job_claims.Heartbeat, "set_stage", cancel_on_entering)
    assert execute_job(sessions, job_id, settings) is JobStatus.CANCELLED
    assert entered[-1] == phase  # nothing after it started
    assert_cancelled_without_results(sessions, settings, job_id)
