"""Reviewing a job's suspects: decisions on samples (made, listed, summed up) and the review queue
a reviewer works through."""

from __future__ import annotations

from datetime import datetime

from pydantic import ConfigDict, Field

from api.schemas.common import SampleIndex, Schema, SplitName
from core.verdicts import Verdict


class DecisionCreate(Schema):
    model_config = ConfigDict(extra="forbid")

    sample_index: SampleIndex
    verdict: Verdict = Field(description="keep the label, relabel it, or remove the sample (ambiguous)")
    label: str | None = Field(None, description="relabel only: the new label")
    client_id: str | None = Field(
        None,
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the client's id for this decision (e.g. a UUID made at the key press): sending it again "
        "returns the stored decision instead of recording a second one",
    )


class DecisionPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int
    sample_id: str
    job_id: int | None = Field(description="the job it was made in")
    reviewer: str
    verdict: Verdict
    given_label: str = Field(description="the label it judged")
    label: str | None = Field(description="the new label of a relabel decision")
    created_at: datetime
    undone_at: datetime | None
    client_id: str | None = Field(None, description="the client's id for it, when it sent one")


class CommentPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    decision_id: int
    author: str
    text: str
    created_at: datetime


class ReviewerDecisionPublic(DecisionPublic):
    sample_index: int = Field(description="the sample's index in the job's dataset version")


class SampleDecisionsPublic(Schema):
    sample_index: int
    sample_id: str
    label: str = Field(description="the job's label of the sample")
    is_mislabeled: bool | None = Field(description="the reviewers' flag, where they agree")
    outcome: str | None = Field(description="the label they agree on, or '(removed)'; null when they conflict")
    conflict: bool
    known_mislabeled: bool | None = Field(description="the job's flag apart from decisions: injected, else uploaded")
    agrees: bool | None = Field(description="is_mislabeled == known_mislabeled, when both are known")
    decisions: list[DecisionPublic] = Field(description="each reviewer's decision that counts, oldest first")


class DecisionSummaryPublic(Schema):
    decided: int = Field(description="samples with a decision that applies to the job's label")
    mislabeled: int
    clean: int
    conflicts: int
    compared: int = Field(description="decided samples whose known flag (injected or uploaded) is known")
    agreeing: int
    agreement: float | None = Field(description="agreeing / compared")


class JobDecisionsPublic(Schema):
    job_id: int
    summary: DecisionSummaryPublic = Field(description="over all the job's decided samples, whatever the page")
    samples: list[SampleDecisionsPublic] = Field(description="by sample index, at most `limit` of them")
    next_after: int | None = Field(None, description="pass as `after` for the next page; null on the last page")


class ClassProbabilityPublic(Schema):
    label: str
    probability: float


class WeightHistoryPublic(Schema):
    epoch: list[int]
    w_alpha: list[float | None]
    w_beta: list[float | None]
    w_delta: list[float | None]


class QueueItemPublic(Schema):
    rank: int
    sample_index: int
    sample_id: str
    label: str = Field(description="the job's label of the sample")
    split: SplitName | None
    score: float = Field(description="the default score, higher = more suspicious")
    top_classes: list[ClassProbabilityPublic] = Field(description="the trained model's most probable classes")
    weights: WeightHistoryPublic | None = Field(description="W_alpha, W_beta, W_delta at every stored epoch")
    values: list | None = Field(description="a row's first values, or a series per channel; null for images")
    thumbnail_url: str | None = Field(description="images: a PNG thumbnail")
    review: SampleDecisionsPublic | None
    comments: list[CommentPublic] = Field(description="the comments on the decisions in `review`, oldest first")


class ReviewProgressPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    total: int = Field(description="samples passing the filters (review status aside)")
    decided: int
    remaining: int
    conflicts: int


class ReviewQueuePublic(Schema):
    items: list[QueueItemPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")
    progress: ReviewProgressPublic | None = Field(description="on the first page (without a cursor)")
