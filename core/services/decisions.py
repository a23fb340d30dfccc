"""Reviewers' decisions on a job's samples: recorded, undone, and read back per job with what they
make known (see `core.verdicts` for what a verdict says about a label).

A decision belongs to the dataset and the sample's stable id, with the job it was made in and the
label it judged (the job's label of the sample: the injected one for a job with injected noise).
Per sample, each reviewer's newest decision that is not undone counts; it applies to a job when
it judged the label the job has for the sample, or corrected to that label, or removed the sample.
A sample is decided for a job when a decision applies; where the reviewers agree, their decision
is the sample's known flag for the job's metrics (overriding an uploaded flag).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from core.audit import NoisyLabels
from core.services import ConflictError, InvalidParameterError, NotFoundError, PermissionDeniedError
from core.services.artifacts import JobArtifacts
from core.store.models import AuditJob, Dataset, DatasetVersion, Decision, Sample, utcnow
from core.verdicts import Verdict, agreed_flag


@dataclass(frozen=True)
class Reviewer:
    """Who makes decisions: a person (an API key's reviewer name) of an owner."""

    owner_id: int
    name: str


@dataclass(frozen=True)
class SampleDecisions:
    """The decisions that count on one sample of a job, one per reviewer, oldest first."""

    sample_index: int
    sample_id: str
    label: str  # the job's label of the sample
    reference_flag: bool | None  # the job's flag apart from decisions: injected, else uploaded
    decisions: tuple[Decision, ...]

    @property
    def applicable(self) -> tuple[Decision, ...]:
        """The decisions that judged the job's label of the sample (the others judged another one)."""
        return tuple(decision for decision in self.decisions if decision.flag_for(self.label) is not None)

    @property
    def flag(self) -> bool | None:
        """Whether the job's label is mislabeled, where the applicable decisions agree."""
        return agreed_flag(decision.flag_for(self.label) for decision in self.decisions)

    @property
    def outcome(self) -> str | None:
        """The label the reviewers would give the sample (or `core.verdicts.REMOVED`); None when
        they conflict or no decision applies."""
        outcomes = {decision.outcome for decision in self.applicable}
        return outcomes.pop() if len(outcomes) == 1 else None

    @property
    def conflict(self) -> bool:
        return len({decision.outcome for decision in self.applicable}) > 1

    @property
    def agrees(self) -> bool | None:
        """Whether the reviewers' flag matches the reference flag; None unless both are known."""
        if self.flag is None or self.reference_flag is None:
            return None
        return self.flag == self.reference_flag


def record_decision(
    session: Session,
    reviewer: Reviewer,
    job: AuditJob,
    sample_index: int,
    verdict: Verdict,
    label: str | None,
    artifacts: JobArtifacts,
) -> Decision:
    """Record the reviewer's verdict on a sample of the job: keep its label, relabel it to `label`
    (a class name of the dataset version), or remove it."""
    version = job.dataset_version
    sample = session.get(Sample, (version.id, sample_index))
    if sample is None:
        raise NotFoundError(f"job {job.id} has no sample {sample_index}")
    given = version.class_names[_job_label(sample, artifacts)]
    if verdict is Verdict.RELABEL:
        if label is None:
            raise InvalidParameterError("a relabel decision needs the new label")
        if label not in version.class_names:
            raise InvalidParameterError(f"unknown label {label!r}; the labels are {', '.join(version.class_names)}")
        if label == given:
            raise InvalidParameterError(f"sample {sample.sample_id!r} is labeled {label!r} already; keep it instead")
    elif label is not None:
        raise InvalidParameterError(f"a {verdict.value} decision takes no label")
    decision = Decision(
        dataset_id=version.dataset_id,
        sample_id=sample.sample_id,
        job_id=job.id,
        reviewer=reviewer.name,
        verdict=verdict,
        given_label=given,
        label=label,
    )
    session.add(decision)
    session.flush()
    return decision


def undo_decision(session: Session, reviewer: Reviewer, decision_id: int) -> Decision:
    """Undo one of the reviewer's decisions; the reviewer's previous decision on the sample, if
    any, counts again."""
    decision = session.scalar(
        select(Decision).join(Dataset).where(Decision.id == decision_id, Dataset.owner_id == reviewer.owner_id)
    )
    if decision is None:
        raise NotFoundError(f"decision {decision_id} not found")
    if decision.reviewer != reviewer.name:
        raise PermissionDeniedError(f"decision {decision_id} is {decision.reviewer}'s; only they can undo it")
    if decision.undone_at is not None:
        raise ConflictError(f"decision {decision_id} is undone already")
    decision.undone_at = utcnow()
    session.flush()
    return decision


def job_decisions(session: Session, job: AuditJob, artifacts: JobArtifacts) -> dict[int, SampleDecisions]:
    """The decisions that count on the job's samples, by sample index (samples nobody decided are
    left out)."""
    return _decisions(session, job.dataset_version, artifacts.read_labels())


def version_decisions(session: Session, version: DatasetVersion) -> dict[int, SampleDecisions]:
    """The decisions that count on the samples of a dataset version, judged against the version's
    own labels and flags, by sample index."""
    return _decisions(session, version, None)


def _decisions(session: Session, version: DatasetVersion, labels: NoisyLabels | None) -> dict[int, SampleDecisions]:
    by_sample: dict[int, list[Decision]] = {}
    samples: dict[int, tuple[str, int, bool | None]] = {}
    for decision, sample_index, label, uploaded_flag in session.execute(_counted_statement(version)):
        by_sample.setdefault(sample_index, []).append(decision)
        if labels is not None:
            label, uploaded_flag = int(labels.labels[sample_index]), bool(labels.is_mislabeled[sample_index])
        samples[sample_index] = (decision.sample_id, label, uploaded_flag)
    return {
        index: SampleDecisions(
            sample_index=index,
            sample_id=samples[index][0],
            label=version.class_names[samples[index][1]],
            reference_flag=samples[index][2],
            decisions=tuple(decisions),
        )
        for index, decisions in sorted(by_sample.items())
    }


def decided(reviews: dict[int, SampleDecisions]) -> Iterator[SampleDecisions]:
    """The samples on which a decision applies."""
    return (review for review in reviews.values() if review.applicable)


def last_change(session: Session, dataset_id: int) -> datetime | None:
    """When a decision on the dataset was last made or undone."""
    changed = func.coalesce(Decision.undone_at, Decision.created_at)
    return session.scalar(select(func.max(changed)).where(Decision.dataset_id == dataset_id))


def _counted_statement(version: DatasetVersion):
    """(decision, sample index, label, uploaded flag) of every decision that counts on a sample of
    the dataset version: each reviewer's newest one not undone, oldest first."""
    newest = (
        select(func.max(Decision.id))
        .where(Decision.dataset_id == version.dataset_id, Decision.undone_at.is_(None))
        .group_by(Decision.sample_id, Decision.reviewer)
    )
    return (
        select(Decision, Sample.sample_index, Sample.label, Sample.is_mislabeled)
        .join(Sample, and_(Sample.dataset_version_id == version.id, Sample.sample_id == Decision.sample_id))
        .where(Decision.id.in_(newest))
        .order_by(Decision.id)
    )


def _job_label(sample: Sample, artifacts: JobArtifacts) -> int:
    labels = artifacts.read_labels()
    return sample.label if labels is None else int(labels.labels[sample.sample_index])
