"""Reviewers' decisions on a job's samples: recorded, undone, and read back per job with what they
make known (see `core.verdicts` for what a verdict says about a label).

A decision belongs to the dataset and the sample's stable id, with the job it was made in and the
label it judged (the job's label of the sample: the injected one for a job with injected noise).
Per sample, each reviewer's newest decision that is not undone counts; it applies to a job when
it judged the label the job has for the sample, or corrected to that label, or removed the sample.
A sample is decided for a job when a decision applies; where the reviewers agree, their decision
is the sample's known flag for the job's metrics (overriding an uploaded flag). An adjudication
(`core.services.assignments`) overrides the reviewers; on a sample assigned for blind review,
reviewers who disagree make nothing known until it is adjudicated.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.audit import NoisyLabels
from core.services import ConflictError, InvalidParameterError, NotFoundError, PermissionDeniedError
from core.services.artifacts import JobArtifacts
from core.store.models import Adjudication, Assignment, AuditJob, Dataset, DatasetVersion, Decision, Sample, utcnow
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
    adjudication: Adjudication | None = None  # the newest final verdict on the sample, if any
    blind_reviewers: frozenset[str] = frozenset()  # assigned for blind review: all must decide first

    @property
    def blind(self) -> bool:
        return bool(self.blind_reviewers)

    @property
    def pending(self) -> bool:
        """A blind sample that not every assigned reviewer has decided yet: nothing is agreed."""
        return not self.blind_reviewers <= {decision.reviewer for decision in self.decisions}

    @property
    def applicable(self) -> tuple[Decision, ...]:
        """The decisions that judged the job's label of the sample (the others judged another one)."""
        return tuple(decision for decision in self.decisions if decision.flag_for(self.label) is not None)

    @property
    def adjudicated(self) -> bool:
        """Whether an adjudication judged the job's label of the sample: it is then the agreed decision."""
        return self.adjudication is not None and self.adjudication.flag_for(self.label) is not None

    @property
    def flag(self) -> bool | None:
        """Whether the job's label is mislabeled: the adjudication's flag, else the flag the
        applicable decisions agree on (none while blind reviewers disagree or are still deciding)."""
        if self.adjudicated:
            return self.adjudication.flag_for(self.label)
        if self.blind and (self.disagree or self.pending):
            return None
        return agreed_flag(decision.flag_for(self.label) for decision in self.decisions)

    @property
    def outcome(self) -> str | None:
        """The label the sample ends up with (or `core.verdicts.REMOVED`): the adjudication's, else
        the one the reviewers agree on; None when they conflict, a blind review is still pending, or
        no decision applies."""
        if self.adjudicated:
            return self.adjudication.outcome
        if self.pending:
            return None
        outcomes = {decision.outcome for decision in self.applicable}
        return outcomes.pop() if len(outcomes) == 1 else None

    @property
    def disagree(self) -> bool:
        """Whether the applicable decisions would leave the sample with different labels."""
        return len({decision.outcome for decision in self.applicable}) > 1

    @property
    def conflict(self) -> bool:
        """An open conflict: the reviewers disagree and no adjudication settled it."""
        return self.disagree and not self.adjudicated

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
    client_id: str | None = None,
) -> Decision:
    """Record the reviewer's verdict on a sample of the job: keep its label, relabel it to `label`
    (a class name of the dataset version), or remove it.

    With a `client_id` (the client's id for one key press) the call is idempotent: when the
    reviewer already has a decision with that id on the dataset, that decision is returned and
    nothing is recorded, also when two identical requests race (the unique index decides)."""
    version = job.dataset_version
    sample = session.get(Sample, (version.id, sample_index))
    if sample is None:
        raise NotFoundError(f"job {job.id} has no sample {sample_index}")
    if client_id is not None and (stored := _by_client_id(session, version.dataset_id, reviewer, client_id)):
        return _replayed(stored, sample, verdict, label)
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
        client_id=client_id,
    )
    try:
        with session.begin_nested():
            session.add(decision)
    except IntegrityError:
        stored = None if client_id is None else _by_client_id(session, version.dataset_id, reviewer, client_id)
        if stored is None:
            raise
        return _replayed(stored, sample, verdict, label)
    return decision


def _by_client_id(session: Session, dataset_id: int, reviewer: Reviewer, client_id: str) -> Decision | None:
    return session.scalar(
        select(Decision).where(
            Decision.dataset_id == dataset_id, Decision.reviewer == reviewer.name, Decision.client_id == client_id
        )
    )


def _replayed(stored: Decision, sample: Sample, verdict: Verdict, label: str | None) -> Decision:
    """The stored decision a repeated request names; a different decision under the same client
    id is a client's bug, refused rather than taken for the stored one."""
    if (stored.sample_id, stored.verdict, stored.label) != (sample.sample_id, verdict, label):
        raise ConflictError(
            f"client id {stored.client_id!r} names decision {stored.id} ({stored.verdict.value} on sample "
            f"{stored.sample_id!r}), not this one; send a new client id for a new decision"
        )
    return stored


def reviewer_decisions(
    session: Session, reviewer: Reviewer, job: AuditJob, *, limit: int
) -> list[tuple[Decision, int]]:
    """The reviewer's decisions made in the job that are not undone, newest first, with the
    sample index of each: what the reviewer's undo works back through."""
    statement = (
        select(Decision, Sample.sample_index)
        .join(Sample, and_(Sample.dataset_version_id == job.dataset_version_id, Sample.sample_id == Decision.sample_id))
        .where(Decision.job_id == job.id, Decision.reviewer == reviewer.name, Decision.undone_at.is_(None))
        .order_by(Decision.id.desc())
        .limit(limit)
    )
    return [(decision, index) for decision, index in session.execute(statement)]


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
    adjudications = _newest_adjudications(session, version.dataset_id)
    blind = _blind_reviewers(session, version.dataset_id)
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
            adjudication=adjudications.get(samples[index][0]),
            blind_reviewers=blind.get(samples[index][0], frozenset()),
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


def _newest_adjudications(session: Session, dataset_id: int) -> dict[str, Adjudication]:
    """The newest adjudication of each sample id of the dataset."""
    newest = (
        select(func.max(Adjudication.id))
        .where(Adjudication.dataset_id == dataset_id)
        .group_by(Adjudication.sample_id)
    )
    found = session.scalars(select(Adjudication).where(Adjudication.id.in_(newest)))
    return {adjudication.sample_id: adjudication for adjudication in found}


def _blind_reviewers(session: Session, dataset_id: int) -> dict[str, frozenset[str]]:
    """The reviewers of each sample id of the dataset assigned for blind review in any of its jobs."""
    statement = select(Assignment.sample_id, Assignment.reviewer).where(
        Assignment.dataset_id == dataset_id, Assignment.blind
    )
    reviewers: dict[str, set[str]] = {}
    for sample_id, reviewer in session.execute(statement):
        reviewers.setdefault(sample_id, set()).add(reviewer)
    return {sample_id: frozenset(names) for sample_id, names in reviewers.items()}


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
