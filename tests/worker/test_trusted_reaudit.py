"""A re-audit that uses the reviewers' verdicts as its trusted set, run by the worker's service
function on real databases: the agreed verdicts (kept: the label; relabelled: the corrected one)
are held out as the validation split with those labels, the job's summary counts them, and with
FBR the agreement d_i is stored for every sample of every epoch and ranks as a score."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from core.audit import AuditConfig
from core.dynamics import SPLIT_VAL
from core.errors import ConfigError
from core.services import InvalidParameterError, decisions
from core.services.artifacts import job_artifacts
from core.services.audit_runs import execute_job
from core.services.decisions import Reviewer
from core.services.reaudits import start_reaudit
from core.services.results.suspects import suspects_page
from core.store import AuditJob, JobStatus, SampleEpoch, session_scope
from core.verdicts import Verdict

pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")

EPOCHS = 2


def _first_audit(sessions, settings, make_job):
    job_id = make_job(epochs=EPOCHS)
    assert execute_job(sessions, job_id, settings) is JobStatus.SUCCEEDED
    with session_scope(sessions) as session:
        job = session.get(AuditJob, job_id, options=[joinedload(AuditJob.dataset_version)])
        return job_id, job.owner_id, job.dataset_version.dataset_id


def _review(sessions, settings, job_id, owner_id, digits):
    """Two reviewers: 20 samples kept, 3 relabelled (to the next class), one they disagree on, one
    removed. Returns the trusted set the verdicts make: {index: label}."""
    kept, relabelled, disputed, removed = list(range(0, 20)), [20, 21, 22], 23, 24
    names = digits.class_names
    with session_scope(sessions) as session:
        job = session.get(AuditJob, job_id, options=[joinedload(AuditJob.dataset_version)])
        artifacts = job_artifacts(settings, job)
        ana, ben = Reviewer(owner_id, "ana"), Reviewer(owner_id, "ben")
        for index in kept:
            decisions.record_decision(session, ana, job, index, Verdict.KEEP, None, artifacts)
        for index in relabelled:
            corrected = names[(int(digits.y[index]) + 1) % digits.num_classes]
            decisions.record_decision(session, ana, job, index, Verdict.RELABEL, corrected, artifacts)
        decisions.record_decision(session, ana, job, disputed, Verdict.KEEP, None, artifacts)
        decisions.record_decision(session, ben, job, disputed, Verdict.REMOVE, None, artifacts)
        decisions.record_decision(session, ben, job, removed, Verdict.REMOVE, None, artifacts)
    trusted = {index: int(digits.y[index]) for index in kept}
    trusted |= {index: (int(digits.y[index]) + 1) % digits.num_classes for index in relabelled}
    return trusted


@pytest.mark.parametrize("weighting", ["lilaw", "fbr"])
def test_a_reaudit_with_verdicts_trains_with_them_as_the_trusted_set(sessions, settings, make_job, digits, n, weighting):
    first, owner_id, dataset_id = _first_audit(sessions, settings, make_job)
    trusted = _review(sessions, settings, first, owner_id, digits)
    config = AuditConfig(epochs=EPOCHS, batch_size=64, weighting=weighting)
    with session_scope(sessions) as session:
        # No new version, but decisions since the last audit: not skipped.
        second = start_reaudit(session, owner_id, dataset_id, config, use_verdicts_as_trusted=True).job.id
        assert session.get(AuditJob, second).trusted == {str(i): c for i, c in trusted.items()}

    assert execute_job(sessions, second, settings) is JobStatus.SUCCEEDED
    with session_scope(sessions) as session:
        job = session.get(AuditJob, second, options=[joinedload(AuditJob.dataset_version)])
        assert job.result["num_trusted"] == job.result["num_validation"] == len(trusted)
        held_out = session.scalars(
            select(SampleEpoch.sample_index).where(
                SampleEpoch.job_id == second, SampleEpoch.epoch == EPOCHS, SampleEpoch.split == SPLIT_VAL
            )
        ).all()
        assert set(held_out) == set(trusted)  # the trusted samples are held out, nothing else
        stored_agreement = session.execute(
            select(SampleEpoch.epoch, func.count(SampleEpoch.fbr_agreement))
            .where(SampleEpoch.job_id == second)
            .group_by(SampleEpoch.epoch)
            .order_by(SampleEpoch.epoch)
        ).all()
        artifacts = job_artifacts(settings, job)
        if weighting == "fbr":
            assert stored_agreement == [(epoch, n) for epoch in range(1, EPOCHS + 1)]
            page = suspects_page(session, job, artifacts, limit=n, score="fbr_agreement")
            values = [ranked.score for ranked in page.suspects]
            assert len(values) == n and all(v is not None for v in values)
            assert values == sorted(values, reverse=True)  # low agreement first
            per_epoch = suspects_page(session, job, artifacts, limit=5, score="fbr_agreement", epoch=EPOCHS)
            assert len(per_epoch.suspects) == 5
        else:
            assert stored_agreement == [(epoch, 0) for epoch in range(1, EPOCHS + 1)]  # NULL without FBR
            with pytest.raises(InvalidParameterError, match="has no score 'fbr_agreement'"):
                suspects_page(session, job, artifacts, limit=5, score="fbr_agreement")


def test_a_reaudit_with_verdicts_is_refused_without_agreed_verdicts_and_fbr_without_verdicts(
    sessions, settings, make_job
):
    _, owner_id, dataset_id = _first_audit(sessions, settings, make_job)
    with session_scope(sessions) as session:
        with pytest.raises(InvalidParameterError, match="no sample of version 1 has an agreed verdict"):
            start_reaudit(session, owner_id, dataset_id, AuditConfig(epochs=1), force=True, use_verdicts_as_trusted=True)
        with pytest.raises(ConfigError, match="needs a trusted set"):
            start_reaudit(session, owner_id, dataset_id, AuditConfig(epochs=1, weighting="fbr"), force=True)
        assert session.scalar(select(func.count()).select_from(AuditJob).where(AuditJob.owner_id == owner_id)) == 1


def test_without_the_option_a_reaudit_trains_as_before(sessions, settings, make_job, digits):
    first, owner_id, dataset_id = _first_audit(sessions, settings, make_job)
    _review(sessions, settings, first, owner_id, digits)
    with session_scope(sessions) as session:
        skipped = start_reaudit(session, owner_id, dataset_id, AuditConfig(epochs=1))
        assert skipped.job is None  # decisions alone are no change for a re-audit that ignores them
        second = start_reaudit(session, owner_id, dataset_id, AuditConfig(epochs=1, batch_size=64), force=True).job.id
    assert execute_job(sessions, second, settings) is JobStatus.SUCCEEDED
    with session_scope(sessions) as session:
        job = session.get(AuditJob, second)
        assert job.trusted is None and job.result["num_trusted"] is None
        assert job.result["num_validation"] == pytest.approx(0.1 * len(digits), abs=digits.num_classes)
