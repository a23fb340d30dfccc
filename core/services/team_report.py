"""The team's report on a job: each reviewer's progress on their assignments and speed, and the
agreement between reviewers (Cohen's kappa per pair, Fleiss' kappa over the samples with two
or more decisions), with the job's blind, conflicting and adjudicated sample counts.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.agreement import cohen_kappa, fleiss_kappa
from core.services import decisions
from core.services.artifacts import JobArtifacts
from core.services.assignments import adjudicators
from core.store.models import Assignment, AuditJob, Decision


@dataclass(frozen=True)
class ReviewerStats:
    reviewer: str
    assigned: int
    decided: int  # of the assigned samples, those the reviewer decided
    decisions: int  # samples of the job the reviewer's decision applies to, assigned or not
    median_seconds_between: float | None
    decisions_per_hour: float | None  # 3600 / the median gap, so that breaks do not count

    @property
    def remaining(self) -> int:
        return self.assigned - self.decided


@dataclass(frozen=True)
class PairAgreement:
    first: str
    second: str
    shared: int  # samples both decided
    agreeing: int
    cohen_kappa: float | None


@dataclass(frozen=True)
class TeamReport:
    reviewers: list[ReviewerStats]
    pairs: list[PairAgreement]
    fleiss_kappa: float | None
    fleiss_samples: int  # samples with at least two reviewers' decisions
    assigned_samples: int
    blind_samples: int
    open_conflicts: int
    adjudicated: int
    adjudicators: list[str]


def team_report(session: Session, job: AuditJob, artifacts: JobArtifacts) -> TeamReport:
    """Each reviewer's progress on their assignments, their speed, and the agreement between
    reviewers on the samples they share (their verdicts as the label each would leave)."""
    reviews = decisions.job_decisions(session, job, artifacts)
    assignments = session.execute(
        select(Assignment.sample_index, Assignment.reviewer, Assignment.blind).where(Assignment.job_id == job.id)
    ).all()
    assigned: dict[str, set[int]] = {}
    for index, name, _ in assignments:
        assigned.setdefault(name, set()).add(index)
    ratings: dict[str, dict[int, str]] = {}  # reviewer -> sample index -> outcome
    for review in reviews.values():
        for decision in review.applicable:
            ratings.setdefault(decision.reviewer, {})[review.sample_index] = decision.outcome
    gaps = _decision_gaps(session, job)
    names = sorted(set(assigned) | set(ratings))
    stats = []
    for name in names:
        mine, rated = assigned.get(name, set()), ratings.get(name, {})
        median = statistics.median(gaps[name]) if gaps.get(name) else None
        stats.append(
            ReviewerStats(
                reviewer=name,
                assigned=len(mine),
                decided=sum(index in rated for index in mine),
                decisions=len(rated),
                median_seconds_between=median,
                decisions_per_hour=None if not median else 3600.0 / median,
            )
        )
    pairs = []
    for first, second in itertools.combinations(names, 2):
        a, b = ratings.get(first, {}), ratings.get(second, {})
        shared = sorted(set(a) & set(b))
        if not shared:
            continue
        pairs.append(
            PairAgreement(
                first=first,
                second=second,
                shared=len(shared),
                agreeing=sum(a[index] == b[index] for index in shared),
                cohen_kappa=cohen_kappa([a[index] for index in shared], [b[index] for index in shared]),
            )
        )
    subjects = [[decision.outcome for decision in review.applicable] for review in reviews.values()]
    subjects = [subject for subject in subjects if len(subject) >= 2]
    return TeamReport(
        reviewers=stats,
        pairs=pairs,
        fleiss_kappa=fleiss_kappa(subjects),
        fleiss_samples=len(subjects),
        assigned_samples=len({index for index, _, _ in assignments}),
        blind_samples=len({index for index, _, blind in assignments if blind}),
        open_conflicts=sum(review.conflict for review in reviews.values()),
        adjudicated=sum(review.adjudicated and review.disagree for review in reviews.values()),
        adjudicators=adjudicators(session, job),
    )


def _decision_gaps(session: Session, job: AuditJob) -> dict[str, list[float]]:
    """Seconds between each reviewer's consecutive decisions made in the job (undone ones too:
    they are work done)."""
    times: dict[str, list] = {}
    statement = select(Decision.reviewer, Decision.created_at).where(Decision.job_id == job.id).order_by(Decision.id)
    for name, created_at in session.execute(statement):
        times.setdefault(name, []).append(created_at)
    return {
        name: [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(sorted(stamps))]
        for name, stamps in times.items()
    }
