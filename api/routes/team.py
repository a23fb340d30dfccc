"""Team review of a job: the lead assigns samples (by rank range, class or count; optionally
blind with k reviewers each) and names adjudicators; adjudicators list and resolve conflicts;
everyone comments on decisions and reads the team's progress, speed and agreement."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from sqlalchemy import select

from api.deps import CurrentReviewer, SessionDep, SettingsDep
from api.routes.results import class_index
from api.schemas import DecisionPublic, ErrorPublic
from api.schemas.common import DbId
from api.schemas.team import (
    AdjudicationCreate,
    AdjudicationPublic,
    AdjudicatorsPublic,
    AssignmentCreate,
    AssignmentPublic,
    AssignmentResultPublic,
    CommentCreate,
    CommentedDecisionPublic,
    CommentPublic,
    ConflictPublic,
    ConflictsPublic,
    PairAgreementPublic,
    ReviewerStatsPublic,
    TeamReportPublic,
    TeamViewerPublic,
    UnassignedPublic,
)
from core.services import assignments, comments, jobs
from core.services import team_report as team_reports  # the route `team_report` takes the plain name
from core.services.artifacts import job_artifacts
from core.store.models import SampleScore

router = APIRouter(
    tags=["team review"],
    responses={
        401: {"model": ErrorPublic, "description": "missing or invalid API key"},
        403: {"model": ErrorPublic, "description": "not the lead (or an adjudicator) of the job"},
        404: {"model": ErrorPublic, "description": "no such job or decision of the caller's"},
        422: {"model": ErrorPublic, "description": "invalid request"},
    },
)

# Changes a reviewer key may make (see `api.deps`): adjudicating (when named adjudicator) and commenting.
REVIEWER_WRITES = ["review"]
ReviewerName = Annotated[str, Path(min_length=1, max_length=100)]


@router.post("/jobs/{job_id}/assignments", status_code=201)
def assign(
    job_id: DbId, body: AssignmentCreate, reviewer: CurrentReviewer, session: SessionDep, settings: SettingsDep
) -> AssignmentResultPublic:
    """Assign samples of the job to reviewers (lead only): ranks `rank_from`..`rank_to`, or
    samples of `label`, or the next `count` unassigned ones (combinable), most suspicious first,
    `reviewers_per_sample` of the reviewers each, in turn. With `blind`, no reviewer sees another's
    verdict on those samples before deciding, and disagreements wait for an adjudicator."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    result = assignments.assign(
        session,
        reviewer,
        job,
        job_artifacts(settings, job),
        reviewers=body.reviewers,
        rank_from=body.rank_from,
        rank_to=body.rank_to,
        label=class_index(body.label, job.dataset_version.class_names),
        count=body.count,
        per_sample=body.reviewers_per_sample,
        blind=body.blind,
    )
    return AssignmentResultPublic(
        samples=result.samples, assignments=result.assignments, per_reviewer=result.per_reviewer
    )


@router.get("/jobs/{job_id}/assignments")
def list_assignments(
    job_id: DbId,
    reviewer: CurrentReviewer,
    session: SessionDep,
    of: Annotated[str | None, Query(max_length=100, description="only this reviewer's")] = None,
) -> list[AssignmentPublic]:
    """The job's assignments in rank order."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    return [
        AssignmentPublic(
            sample_index=assignment.sample_index,
            sample_id=assignment.sample_id,
            rank=rank,
            reviewer=assignment.reviewer,
            blind=assignment.blind,
            assigned_by=assignment.assigned_by,
            created_at=assignment.created_at,
        )
        for assignment, rank in assignments.job_assignments(session, job, of)
    ]


@router.delete("/jobs/{job_id}/assignments")
def unassign(
    job_id: DbId,
    reviewer: CurrentReviewer,
    session: SessionDep,
    of: Annotated[str | None, Query(max_length=100, description="only this reviewer's; everyone's without")] = None,
) -> UnassignedPublic:
    """Take assignments back (lead only); decisions already made stay."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    return UnassignedPublic(removed=assignments.unassign(session, reviewer, job, of))


@router.put("/jobs/{job_id}/adjudicators/{name}")
def add_adjudicator(
    job_id: DbId, name: ReviewerName, reviewer: CurrentReviewer, session: SessionDep
) -> AdjudicatorsPublic:
    """Give a reviewer the adjudicator role for the job (lead only)."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    return AdjudicatorsPublic(job_id=job.id, adjudicators=assignments.set_adjudicator(session, reviewer, job, name))


@router.delete("/jobs/{job_id}/adjudicators/{name}")
def remove_adjudicator(
    job_id: DbId, name: ReviewerName, reviewer: CurrentReviewer, session: SessionDep
) -> AdjudicatorsPublic:
    """Take the adjudicator role back (lead only)."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    found = assignments.set_adjudicator(session, reviewer, job, name, enabled=False)
    return AdjudicatorsPublic(job_id=job.id, adjudicators=found)


@router.get("/jobs/{job_id}/conflicts")
def list_conflicts(
    job_id: DbId,
    reviewer: CurrentReviewer,
    session: SessionDep,
    settings: SettingsDep,
    include_resolved: Annotated[bool, Query(description="adjudicated ones too")] = False,
) -> ConflictsPublic:
    """The samples the job's reviewers disagree on, with every decision and its comments (lead
    and adjudicators only: it shows blind verdicts)."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    found = assignments.conflicts(
        session, reviewer, job, job_artifacts(settings, job), include_resolved=include_resolved
    )
    by_decision = comments.comments_of(session, [d.id for review in found for d in review.decisions])
    ranked = select(SampleScore.sample_index, SampleScore.rank).where(
        SampleScore.job_id == job.id, SampleScore.sample_index.in_([review.sample_index for review in found])
    )
    ranks = {index: rank for index, rank in session.execute(ranked)}
    image = job.dataset_version.modality == "image"
    samples = [
        ConflictPublic(
            sample_index=review.sample_index,
            sample_id=review.sample_id,
            rank=ranks.get(review.sample_index),
            label=review.label,
            blind=review.blind,
            thumbnail_url=f"/jobs/{job.id}/samples/{review.sample_index}/thumbnail.png" if image else None,
            decisions=[
                CommentedDecisionPublic(
                    **DecisionPublic.model_validate(decision).model_dump(),
                    comments=[CommentPublic.model_validate(c) for c in by_decision.get(decision.id, [])],
                )
                for decision in review.applicable
            ],
            adjudication=None
            if not review.adjudicated
            else AdjudicationPublic.model_validate(review.adjudication),
            outcome=review.outcome,
        )
        for review in found
    ]
    return ConflictsPublic(job_id=job.id, open=sum(review.conflict for review in found), samples=samples)


@router.post(
    "/jobs/{job_id}/adjudications",
    status_code=201,
    tags=REVIEWER_WRITES,
    responses={409: {"model": ErrorPublic, "description": "the reviewers do not disagree on the sample"}},
)
def adjudicate(
    job_id: DbId, body: AdjudicationCreate, reviewer: CurrentReviewer, session: SessionDep, settings: SettingsDep
) -> AdjudicationPublic:
    """The final verdict on a sample the reviewers disagree on (lead or adjudicator): it becomes
    the sample's agreed decision, which the exports, metrics and re-audits use."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    found = assignments.adjudicate(
        session, reviewer, job, job_artifacts(settings, job), body.sample_index, body.verdict, body.label
    )
    return AdjudicationPublic.model_validate(found)


@router.post("/decisions/{decision_id}/comments", status_code=201, tags=REVIEWER_WRITES)
def add_comment(
    decision_id: DbId, body: CommentCreate, reviewer: CurrentReviewer, session: SessionDep
) -> CommentPublic:
    """Comment on a decision the caller may see (theirs, or one on a sample that is not blind or
    that they decided too; the lead and adjudicators see all)."""
    return CommentPublic.model_validate(comments.add_comment(session, reviewer, decision_id, body.text))


@router.get("/decisions/{decision_id}/comments")
def list_comments(decision_id: DbId, reviewer: CurrentReviewer, session: SessionDep) -> list[CommentPublic]:
    """The comments on a decision, oldest first."""
    return [CommentPublic.model_validate(c) for c in comments.decision_comments(session, reviewer, decision_id)]


@router.get("/jobs/{job_id}/team")
def team_report(
    job_id: DbId, reviewer: CurrentReviewer, session: SessionDep, settings: SettingsDep
) -> TeamReportPublic:
    """Each reviewer's progress (assigned, decided, remaining), speed (median seconds between
    decisions, decisions per hour) and agreement: Cohen's kappa for each pair of reviewers on the
    samples both decided, Fleiss' kappa over every sample with two or more decisions."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    report = team_reports.team_report(session, job, job_artifacts(settings, job))
    lead = assignments.is_lead(session, reviewer)
    return TeamReportPublic(
        job_id=job.id,
        viewer=TeamViewerPublic(
            reviewer=reviewer.name, lead=lead, adjudicator=lead or reviewer.name in report.adjudicators
        ),
        reviewers=[ReviewerStatsPublic.model_validate(stats) for stats in report.reviewers],
        pairs=[PairAgreementPublic.model_validate(pair) for pair in report.pairs],
        fleiss_kappa=report.fleiss_kappa,
        fleiss_samples=report.fleiss_samples,
        assigned_samples=report.assigned_samples,
        blind_samples=report.blind_samples,
        open_conflicts=report.open_conflicts,
        adjudicated=report.adjudicated,
        adjudicators=report.adjudicators,
    )
