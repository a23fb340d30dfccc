"""Re-audits executed by the worker's service function on real databases: a re-audit of a new
version is compared with the audit before it, queues the dataset's webhook call, and can start
warm from the previous job's model."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from core.audit import AuditConfig
from core.services.audit_runs import execute_job
from core.services.reaudits import reaudit_report, start_reaudit
from core.services.webhooks import set_webhook
from core.store import AuditJob, JobStatus, WebhookDelivery, session_scope


pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")


def test_a_reaudit_is_reported_against_the_previous_audit_and_announced(sessions, settings, make_job, add_version, n):
    first = make_job(epochs=2)
    assert execute_job(sessions, first, settings) is JobStatus.SUCCEEDED
    with session_scope(sessions) as session:
        job = session.get(AuditJob, first, options=[joinedload(AuditJob.dataset_version)])
        owner_id, dataset_id = job.owner_id, job.dataset_version.dataset_id
        set_webhook(session, dataset_id, "http://127.0.0.1:9/hook", "s" * 32)
    add_version(dataset_id)
    with session_scope(sessions) as session:
        started = start_reaudit(session, owner_id, dataset_id, AuditConfig(epochs=2, batch_size=64), warm_start=True)
        second = started.job.id

    assert execute_job(sessions, second, settings) is JobStatus.SUCCEEDED
    with session_scope(sessions) as session:
        job = session.get(AuditJob, second, options=[joinedload(AuditJob.dataset_version)])
        assert job.result["warm_start"] == f"from job {first}"
        report = reaudit_report(session, job, settings.data_dir)
        [delivery] = session.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == second))
    assert (report.previous_job_id, report.version, report.num_samples) == (first, 2, n)
    assert report.counts["new_samples"] == 0 and report.counts["removed"] == 0
    assert report.counts["newly_suspected"] + report.counts["still_suspected"] == report.num_suspected
    assert delivery.payload["counts"] == report.counts and delivery.event == "reaudit.completed"
