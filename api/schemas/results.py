"""A job's results: pages of ranked suspects, one sample's dynamics, the detection metrics of
every score against the known flags, and the charts of the job page."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from api.schemas.common import Schema, SplitName


class SuspectPublic(Schema):
    rank: int = Field(description="rank under the job's default score (1 = most suspicious)")
    sample_index: int
    sample_id: str
    label: str = Field(description="the given label")
    predicted: str | None = Field(description="the model's label at the ordering epoch")
    split: SplitName | None
    score: float | None = Field(description="the value the list is ordered by, higher = more suspicious")
    p_label: float | None = Field(description="the model's probability of the given label")
    p_max: float | None = Field(description="the model's largest class probability")
    is_mislabeled: bool | None = Field(description="known flag, when known")


class SuspectPagePublic(Schema):
    score: str = Field(description="the score the list is ordered by")
    epoch: int | None = Field(description="the epoch of a per-epoch score; null for the aggregate")
    orientation: str
    items: list[SuspectPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class EpochDynamicsPublic(Schema):
    epoch: int
    split: SplitName
    predicted: str
    w_alpha: float | None
    w_beta: float | None
    w_delta: float | None
    w: float | None
    loss: float | None
    p_label: float | None
    p_max: float | None
    margin: float | None
    el2n: float | None
    fbr_agreement: float | None = Field(None, description="FBR's agreement d_i; null unless the job used weighting fbr")


class SampleDynamicsPublic(Schema):
    job_id: int
    sample_index: int
    sample_id: str
    label: str
    is_mislabeled: bool | None
    rank: int | None
    scores: dict[str, float | None] | None
    epochs: list[EpochDynamicsPublic]


class DetectionPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    auroc: float | None
    auprc_mislabeled: float | None = Field(description="average precision with mislabeled = positive")
    auprc_clean: float | None = Field(description="average precision with clean = positive (the LiLAW paper's)")
    precision_at_k: dict[str, float | None] | None
    recall_at_k: dict[str, float | None] | None
    num_mislabeled: int | None


class EpochDetectionPublic(DetectionPublic):
    epoch: int
    split: str


class ScoreMetricsPublic(Schema):
    score: str
    orientation: str
    aggregate: dict[str, DetectionPublic] = Field(
        description="the aggregated score's metrics by sample split: all, train (train split only)"
    )
    per_epoch: list[EpochDetectionPublic]


class JobMetricsPublic(Schema):
    job_id: int
    default_score: str
    scores: list[ScoreMetricsPublic]


class HistogramPublic(Schema):
    edges: list[float] = Field(description="bins + 1 bin edges")
    counts: dict[str, list[int]] = Field(description="counts per bin of the mislabeled, clean and unknown samples")


class CurvesPublic(Schema):
    auroc: float
    auprc_mislabeled: float
    fpr: list[float]
    tpr: list[float]
    recall: list[float] = Field(description="precision-recall curve, mislabeled = positive")
    precision: list[float]


class DetectionChartsPublic(Schema):
    job_id: int
    score: str = Field(description="the default score, whose raw quantity the histogram shows")
    suspicious_when: Literal["low", "high"]
    flags_source: str = Field(description="where the known flags come from")
    num_known: int
    num_mislabeled: int
    histogram: HistogramPublic
    curves: dict[str, CurvesPublic] = Field(description="by score; empty until both classes are known")
