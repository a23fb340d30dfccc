"""Team review: assignments of a job's samples to reviewers, adjudications of their conflicts,
comments on decisions, and the team's progress and agreement."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from api.schemas.common import DbId, SampleIndex, Schema
from api.schemas.review import CommentPublic, DecisionPublic
from core.verdicts import Verdict

Rank = DbId  # 1 = most suspicious


class AssignmentCreate(Schema):
    model_config = ConfigDict(extra="forbid")

    reviewers: list[str] = Field(min_length=1, max_length=100, description="reviewer names of the owner's keys")
    rank_from: Rank | None = Field(None, description="the first rank assigned (1 = most suspicious)")
    rank_to: Rank | None = Field(None, description="the last rank assigned, included")
    label: str | None = Field(None, description="only samples with this label (the job's label)")
    count: int | None = Field(None, ge=1, le=1_000_000, description="the next this many samples nobody is assigned")
    reviewers_per_sample: int = Field(1, ge=1, le=100, description="k: how many of the reviewers review each sample")
    blind: bool = Field(False, description="no reviewer sees another's verdict before deciding (needs k >= 2)")


class AssignmentResultPublic(Schema):
    samples: int = Field(description="samples that got at least one new reviewer")
    assignments: int = Field(description="new (sample, reviewer) pairs")
    per_reviewer: dict[str, int]


class AssignmentPublic(Schema):
    sample_index: int
    sample_id: str
    rank: int | None
    reviewer: str
    blind: bool
    assigned_by: str
    created_at: datetime


class UnassignedPublic(Schema):
    removed: int


class AdjudicatorsPublic(Schema):
    job_id: int
    adjudicators: list[str] = Field(description="besides the lead, who always adjudicates")


class CommentCreate(Schema):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4_000)


class CommentedDecisionPublic(DecisionPublic):
    comments: list[CommentPublic]


class AdjudicationCreate(Schema):
    model_config = ConfigDict(extra="forbid")

    sample_index: SampleIndex
    verdict: Verdict = Field(description="the final verdict: keep the label, relabel it, or remove the sample")
    label: str | None = Field(None, description="relabel only: the new label")


class AdjudicationPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int
    sample_id: str
    job_id: int | None
    adjudicator: str
    verdict: Verdict
    given_label: str
    label: str | None
    created_at: datetime


class ConflictPublic(Schema):
    sample_index: int
    sample_id: str
    rank: int | None
    label: str = Field(description="the job's label of the sample")
    blind: bool
    thumbnail_url: str | None
    decisions: list[CommentedDecisionPublic] = Field(description="each reviewer's decision that counts, oldest first")
    adjudication: AdjudicationPublic | None = Field(description="the final verdict, once adjudicated")
    outcome: str | None = Field(description="the agreed label (the adjudicated one), '(removed)', or null while open")


class ConflictsPublic(Schema):
    job_id: int
    open: int
    samples: list[ConflictPublic]


class ReviewerStatsPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    reviewer: str
    assigned: int
    decided: int = Field(description="assigned samples the reviewer decided")
    remaining: int
    decisions: int = Field(description="samples of the job the reviewer decided, assigned or not")
    median_seconds_between: float | None = Field(description="median seconds between consecutive decisions")
    decisions_per_hour: float | None = Field(description="3600 / the median gap (breaks do not count)")


class PairAgreementPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    first: str
    second: str
    shared: int = Field(description="samples both decided")
    agreeing: int
    cohen_kappa: float | None = Field(description="null where it is undefined (one single verdict all along)")


class TeamViewerPublic(Schema):
    reviewer: str
    lead: bool
    adjudicator: bool


class TeamReportPublic(Schema):
    job_id: int
    viewer: TeamViewerPublic
    reviewers: list[ReviewerStatsPublic]
    pairs: list[PairAgreementPublic]
    fleiss_kappa: float | None = Field(description="over the samples with at least two reviewers' decisions")
    fleiss_samples: int
    assigned_samples: int
    blind_samples: int
    open_conflicts: int
    adjudicated: int
    adjudicators: list[str]
