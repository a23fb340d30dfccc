"""Team review of a job: the lead assigns samples to reviewers, optionally blind with k reviewers
per sample; an adjudicator resolves the samples they disagree on. Comments on decisions are
`comments`; the team's progress, speed and agreement are `team_report`.

Roles. The lead of a job is its owner's own key (a key without a reviewer name acts under the
owner's name). The lead assigns, names adjudicators and adjudicates; an adjudicator (named per
job) adjudicates. Reviewers are the reviewer names of the owner's keys.

Blind review. A sample assigned blind shows a reviewer who has not decided it yet none of the
other reviewers' verdicts (`QueueView.visible`) nor their comments; disagreeing reviewers make
nothing known about it until an adjudicator gives the final verdict (`SampleDecisions.flag`).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.services import ConflictError, InvalidParameterError, PermissionDeniedError, decisions
from core.services.artifacts import JobArtifacts
from core.services.decisions import Reviewer, SampleDecisions
from core.store.models import (
    Adjudication,
    Adjudicator,
    ApiKey,
    Assignment,
    AuditJob,
    Owner,
    Sample,
    SampleScore,
)
from core.verdicts import Verdict


# ------------------------------------------------------------------ roles


def is_lead(session: Session, reviewer: Reviewer) -> bool:
    """Whether the reviewer is the owner's own key (the lead of every job of the owner)."""
    owner = session.get(Owner, reviewer.owner_id)
    return owner is not None and owner.name == reviewer.name


def adjudicators(session: Session, job: AuditJob) -> list[str]:
    """The reviewers the lead named adjudicators of the job (the lead is one always)."""
    statement = select(Adjudicator.reviewer).where(Adjudicator.job_id == job.id).order_by(Adjudicator.reviewer)
    return list(session.scalars(statement))


def can_adjudicate(session: Session, reviewer: Reviewer, job: AuditJob) -> bool:
    return is_lead(session, reviewer) or reviewer.name in adjudicators(session, job)


def require_export_access(session: Session, reviewer: Reviewer, job: AuditJob) -> None:
    """Exports list every reviewer's verdict: on a job with blind assignments they are for the lead
    and the adjudicators only, or a blind reviewer could read the others' verdicts there."""
    has_blind = session.scalar(select(Assignment.id).where(Assignment.job_id == job.id, Assignment.blind).limit(1))
    if has_blind is not None and not can_adjudicate(session, reviewer, job):
        raise PermissionDeniedError(
            f"job {job.id} is under blind review: its exports are for the lead and the adjudicators"
        )


def set_adjudicator(session: Session, lead: Reviewer, job: AuditJob, name: str, *, enabled: bool = True) -> list[str]:
    """Give the reviewer `name` the adjudicator role for the job (or take it back); the job's
    adjudicators after the change."""
    _require_lead(session, lead)
    name = _known_reviewer(session, lead.owner_id, name)
    found = session.get(Adjudicator, (job.id, name))
    if enabled and found is None:
        session.add(Adjudicator(job_id=job.id, reviewer=name))
    elif not enabled and found is not None:
        session.delete(found)
    session.flush()
    return adjudicators(session, job)


def reviewer_names(session: Session, owner_id: int) -> set[str]:
    """Everyone who reviews for the owner: the reviewer names of the owner's live keys, and the owner."""
    names = set(
        session.scalars(
            select(ApiKey.reviewer).where(
                ApiKey.owner_id == owner_id, ApiKey.reviewer.is_not(None), ApiKey.revoked_at.is_(None)
            )
        )
    )
    owner = session.get(Owner, owner_id)
    return names | ({owner.name} if owner is not None else set())


# ------------------------------------------------------------------ assignment


@dataclass(frozen=True)
class AssignmentResult:
    samples: int  # samples that got at least one new reviewer
    assignments: int  # new (sample, reviewer) pairs
    per_reviewer: dict[str, int]  # new assignments by reviewer


def assign(
    session: Session,
    lead: Reviewer,
    job: AuditJob,
    artifacts: JobArtifacts,
    *,
    reviewers: Sequence[str],
    rank_from: int | None = None,
    rank_to: int | None = None,
    label: int | None = None,
    count: int | None = None,
    per_sample: int = 1,
    blind: bool = False,
) -> AssignmentResult:
    """Assign samples of the job, most suspicious first, to `per_sample` of `reviewers` each, in
    turn so that each reviewer gets about the same number. The samples are those ranked
    `rank_from`..`rank_to` (1 = most suspicious, both included), or of class `label`, or the
    next `count` samples nobody is assigned yet, or a combination (e.g. the next 50 unassigned of
    class 3). A sample keeps the reviewers it has; it gets new ones until it has `per_sample`."""
    _require_lead(session, lead)
    names = list(dict.fromkeys(_known_reviewer(session, lead.owner_id, name) for name in reviewers))
    if not names:
        raise InvalidParameterError("name at least one reviewer")
    if rank_from is None and rank_to is None and label is None and count is None:
        raise InvalidParameterError("choose the samples: a rank range (rank_from, rank_to), a label, or a count")
    if rank_from is not None and rank_to is not None and rank_to < rank_from:
        raise InvalidParameterError(f"rank_to {rank_to} is before rank_from {rank_from}")
    if per_sample < 1 or per_sample > len(names):
        raise InvalidParameterError(f"{per_sample} reviewers per sample need that many reviewers; {len(names)} named")
    if blind and per_sample < 2:
        raise InvalidParameterError("blind review needs at least 2 reviewers per sample")
    assigned = _assigned_reviewers(session, job)
    selected = _ranked_indexes(session, job, artifacts, rank_from, rank_to, label)
    if count is not None:
        selected = [index for index in selected if index not in assigned][:count]
    sample_ids = _sample_ids(session, job, selected)
    per_reviewer: Counter[str] = Counter()
    rotation = itertools.cycle(range(len(names)))
    samples = 0
    for index in selected:
        have = assigned.get(index, set())
        need = per_sample - len(have)
        if need <= 0:
            continue
        start = next(rotation)
        chosen = [name for name in names[start:] + names[:start] if name not in have][:need]
        for name in chosen:
            session.add(
                Assignment(
                    job_id=job.id,
                    dataset_id=job.dataset_version.dataset_id,
                    sample_index=index,
                    sample_id=sample_ids[index],
                    reviewer=name,
                    blind=blind,
                    assigned_by=lead.name,
                )
            )
            per_reviewer[name] += 1
        # The next sample starts further on, so k consecutive reviewers do not always pair up.
        for _ in range(len(chosen) - 1):
            next(rotation)
        samples += bool(chosen)
    session.flush()
    return AssignmentResult(samples=samples, assignments=sum(per_reviewer.values()), per_reviewer=dict(per_reviewer))


def unassign(session: Session, lead: Reviewer, job: AuditJob, reviewer: str | None = None) -> int:
    """Take the job's assignments away (of one reviewer, or everyone's); how many were removed."""
    _require_lead(session, lead)
    statement = delete(Assignment).where(Assignment.job_id == job.id)
    if reviewer is not None:
        statement = statement.where(Assignment.reviewer == reviewer)
    removed = session.execute(statement).rowcount
    session.flush()
    return removed


def job_assignments(
    session: Session, job: AuditJob, reviewer: str | None = None
) -> list[tuple[Assignment, int | None]]:
    """The job's assignments with each sample's rank, in rank order (of one reviewer, or all)."""
    statement = (
        select(Assignment, SampleScore.rank)
        .outerjoin(
            SampleScore,
            (SampleScore.job_id == Assignment.job_id) & (SampleScore.sample_index == Assignment.sample_index),
        )
        .where(Assignment.job_id == job.id)
        .order_by(SampleScore.rank, Assignment.reviewer)
    )
    if reviewer is not None:
        statement = statement.where(Assignment.reviewer == reviewer)
    return [(assignment, rank) for assignment, rank in session.execute(statement)]


def _ranked_indexes(
    session: Session,
    job: AuditJob,
    artifacts: JobArtifacts,
    rank_from: int | None,
    rank_to: int | None,
    label: int | None,
) -> list[int]:
    same_sample = (Sample.dataset_version_id == job.dataset_version_id) & (
        Sample.sample_index == SampleScore.sample_index
    )
    statement = select(SampleScore.sample_index, Sample.label).join(Sample, same_sample)
    statement = statement.where(SampleScore.job_id == job.id).order_by(SampleScore.rank)
    if rank_from is not None:
        statement = statement.where(SampleScore.rank >= rank_from)
    if rank_to is not None:
        statement = statement.where(SampleScore.rank <= rank_to)
    rows = session.execute(statement).all()
    if label is None:
        return [index for index, _ in rows]
    labels = artifacts.read_labels()  # a job with injected noise reviews its own labels
    return [index for index, given in rows if (given if labels is None else int(labels.labels[index])) == label]


def _assigned_reviewers(session: Session, job: AuditJob) -> dict[int, set[str]]:
    found: dict[int, set[str]] = {}
    for index, name in session.execute(
        select(Assignment.sample_index, Assignment.reviewer).where(Assignment.job_id == job.id)
    ):
        found.setdefault(index, set()).add(name)
    return found


def _sample_ids(session: Session, job: AuditJob, indexes: Collection[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    ordered = sorted(indexes)
    for start in range(0, len(ordered), 5_000):
        chunk = ordered[start : start + 5_000]
        statement = select(Sample.sample_index, Sample.sample_id).where(
            Sample.dataset_version_id == job.dataset_version_id, Sample.sample_index.in_(chunk)
        )
        found.update({index: sample_id for index, sample_id in session.execute(statement)})
    return found


# ------------------------------------------------------------------ what a reviewer sees


@dataclass(frozen=True)
class QueueView:
    """What the review queue of one reviewer is made of."""

    viewer: str
    privileged: bool  # the lead or an adjudicator: sees every verdict unless assigned the sample
    job_has_assignments: bool
    assigned: frozenset[int]  # sample indexes assigned to the viewer

    def hides(self, review: SampleDecisions | None) -> bool:
        """Whether the other reviewers' verdicts on the sample are hidden from the viewer."""
        if review is None or not review.blind or decided_by(review, self.viewer):
            return False
        return not self.privileged or review.sample_index in self.assigned

    def visible(self, review: SampleDecisions | None) -> SampleDecisions | None:
        """The review as the viewer may see it: without the others' decisions while blind."""
        if not self.hides(review):
            return review
        own = tuple(decision for decision in review.decisions if decision.reviewer == self.viewer)
        return replace(review, decisions=own, adjudication=None)


def queue_view(session: Session, job: AuditJob, viewer: Reviewer) -> QueueView:
    names = session.execute(
        select(Assignment.sample_index, Assignment.reviewer).where(Assignment.job_id == job.id)
    ).all()
    return QueueView(
        viewer=viewer.name,
        privileged=can_adjudicate(session, viewer, job),
        job_has_assignments=bool(names),
        assigned=frozenset(index for index, name in names if name == viewer.name),
    )


def decided_by(review: SampleDecisions, name: str) -> bool:
    return any(decision.reviewer == name for decision in review.applicable)


# ------------------------------------------------------------------ adjudication


def conflicts(
    session: Session, viewer: Reviewer, job: AuditJob, artifacts: JobArtifacts, *, include_resolved: bool = False
) -> list[SampleDecisions]:
    """The job's samples its reviewers disagree on, by sample index: the open ones, or all."""
    _require_adjudicator(session, viewer, job)
    found = decisions.job_decisions(session, job, artifacts).values()
    return [review for review in found if review.conflict or (include_resolved and review.disagree)]


def adjudicate(
    session: Session,
    adjudicator: Reviewer,
    job: AuditJob,
    artifacts: JobArtifacts,
    sample_index: int,
    verdict: Verdict,
    label: str | None,
) -> Adjudication:
    """The final verdict on a sample the job's reviewers disagree on: it becomes the sample's
    agreed decision (exports, metrics and re-audits read it) until a newer adjudication."""
    _require_adjudicator(session, adjudicator, job)
    review = decisions.job_decisions(session, job, artifacts).get(sample_index)
    if review is None or not review.disagree:
        raise ConflictError(
            f"the reviewers do not disagree on sample {sample_index} of job {job.id}: nothing to adjudicate"
        )
    class_names = job.dataset_version.class_names
    if verdict is Verdict.RELABEL:
        if label is None:
            raise InvalidParameterError("a relabel verdict needs the new label")
        if label not in class_names:
            raise InvalidParameterError(f"unknown label {label!r}; the labels are {', '.join(class_names)}")
        if label == review.label:
            raise InvalidParameterError(f"sample {review.sample_id!r} is labeled {label!r} already; keep it instead")
    elif label is not None:
        raise InvalidParameterError(f"a {verdict.value} verdict takes no label")
    adjudication = Adjudication(
        dataset_id=job.dataset_version.dataset_id,
        sample_id=review.sample_id,
        job_id=job.id,
        adjudicator=adjudicator.name,
        verdict=verdict,
        given_label=review.label,
        label=label,
    )
    session.add(adjudication)
    session.flush()
    return adjudication


# ------------------------------------------------------------------ checks


def _require_lead(session: Session, reviewer: Reviewer) -> None:
    if not is_lead(session, reviewer):
        raise PermissionDeniedError("only the job's lead (the owner's own key) may do this")


def _require_adjudicator(session: Session, reviewer: Reviewer, job: AuditJob) -> None:
    if not can_adjudicate(session, reviewer, job):
        raise PermissionDeniedError(f"only the lead or an adjudicator of job {job.id} may see and resolve conflicts")


def _known_reviewer(session: Session, owner_id: int, name: str) -> str:
    name = name.strip()
    known = reviewer_names(session, owner_id)
    if name not in known:
        raise InvalidParameterError(f"no reviewer named {name!r}; reviewers: {', '.join(sorted(known))}")
    return name
