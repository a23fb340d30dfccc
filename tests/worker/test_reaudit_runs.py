"""Re-audits executed by the worker's service function on real databases: a re-audit of a new
version is compared with the audit before it, queues the dataset's webhook call, and can start
warm from the previous job's model."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from core.audit import AuditConfig
from core.services import decisions
from core.services.artifacts import job_artifacts
from core.services.audit_runs import execute_job
from core.services.decisions import Reviewer
from core.services.reaudits import reaudit_report, reopened_samples, start_reaudit
from core.services.reviews import review_queue
from core.services.webhooks import set_webhook
from core.store import AuditJob, JobStatus, SampleScore, WebhookDelivery, session_scope
from core.verdicts import Verdict


pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")


def test_a_reaudit_is_reported_against_the_previous_audit_and_announced(sessions, settings, make_job, add_version, n):
    first = make_job(epochs=2)
    assert execute_job(sessions, first, settings) is JobStatus.SUCCEEDED
    with session_scope(sessions) as session:
        job = session.get(AuditJob, first, options=[joinedload(AuditJob.dataset_version)])
        owner_id, dataset_id = job.owner_id, job.dataset_version.dataset_id
        set_webhook(session, dataset_id, "http://127.0.0.1:9/hook", "s" * 32, allow_private_hosts=True)
    add_version(dataset_id)
    with session_scope(sessions) as session:
        started = start_reaudit(session, owner_id, dataset_id, AuditConfig(epochs=2, batch_size=64), warm_start=True)
        second = started.job.id

    assert execute_job(sessions, second, settings) is JobStatus.SUCCEEDED
    with session_scope(sessions) as session:
        job = session.get(AuditJob, second, options=[joinedload(AuditJob.dataset_version)])
        assert job.result["warm_start"] == f"from job {first}"
        report = reaudit_report(session, job, job_artifacts(settings, job))
        [delivery] = session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == second))
    assert (report.previous_job_id, report.version, report.num_samples) == (first, 2, n)
    assert report.counts["new_samples"] == 0 and report.counts["removed"] == 0
    assert report.counts["newly_suspected"] + report.counts["still_suspected"] == report.num_suspected
    assert delivery.payload["counts"] == report.counts and delivery.event == "reaudit.completed"


def audited_twice(sessions, settings, make_job, add_version) -> tuple[int, int, int]:
    """A first audit, a new version and its re-audit, both run: (owner id, first, second job)."""
    first = make_job(epochs=2)
    assert execute_job(sessions, first, settings) is JobStatus.SUCCEEDED
    with session_scope(sessions) as session:
        job = session.get(AuditJob, first, options=[joinedload(AuditJob.dataset_version)])
        owner_id, dataset_id = job.owner_id, job.dataset_version.dataset_id
    add_version(dataset_id)
    with session_scope(sessions) as session:
        second = start_reaudit(session, owner_id, dataset_id, AuditConfig(epochs=2, batch_size=64)).job.id
    assert execute_job(sessions, second, settings) is JobStatus.SUCCEEDED
    return owner_id, first, second


def place(session, job_id: int, sample_index: int, rank: int) -> None:
    """Give the sample `rank` in the job, swapping ranks with the sample that held it (through a
    free rank: ranks are unique per job)."""
    def score(**where) -> SampleScore:
        return session.scalar(select(SampleScore).filter_by(job_id=job_id, **where))

    moved, holder = score(sample_index=sample_index), score(rank=rank)
    old_rank = moved.rank
    for row, new_rank in ((holder, 0), (moved, rank), (holder, old_rank)):
        row.rank = new_rank
        session.flush()


def test_a_decided_sample_returns_to_review_only_when_the_reaudit_ranks_it_markedly_more_suspicious(
    sessions, settings, make_job, add_version, n
):
    owner_id, first, second = audited_twice(sessions, settings, make_job, add_version)
    with session_scope(sessions) as session:
        ranks = select(SampleScore.rank, SampleScore.sample_index).where(SampleScore.job_id == second)
        by_rank = dict(session.execute(ranks).all())
        risen, steady = by_rank[1], by_rank[2]  # the re-audit's two most suspicious samples
        # The first audit ranked `risen` last (a rise of ~100 percentile points, past the 20 of
        # REOPEN_PERCENTILE_RISE) and `steady` 10 points lower than the re-audit does.
        place(session, first, risen, n)
        place(session, first, steady, 2 + n // 10)
        first_job = session.get(AuditJob, first, options=[joinedload(AuditJob.dataset_version)])
        reviewer = Reviewer(owner_id, "ana")
        for index in (risen, steady):
            artifacts = job_artifacts(settings, first_job)
            decisions.record_decision(session, reviewer, first_job, index, Verdict.KEEP, None, artifacts)

    with session_scope(sessions) as session:
        job = session.get(AuditJob, second, options=[joinedload(AuditJob.dataset_version)])
        artifacts = job_artifacts(settings, job)
        reviews = decisions.job_decisions(session, job, artifacts)
        assert set(reviews) == {risen, steady}  # both decisions carry over to the new version
        assert reopened_samples(session, job, reviews) == {risen}
        report = reaudit_report(session, job, artifacts)
        queue = review_queue(session, job, settings, limit=n)
    assert [sample.sample_index for sample in report.samples["reopened"]] == [risen]
    queued = [item.suspect.suspect.sample_index for item in queue.items]
    assert risen in queued and steady not in queued
    assert queued[0] == risen  # reopened at its new rank: first
