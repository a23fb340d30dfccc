"""A job's estimate of the label errors in its dataset: overall, per given label and per
"given label → likely label" pair, with how far the review has come."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.common import Schema


class ClassNoisePublic(Schema):
    label: str = Field(description="the given label")
    samples: int = Field(description="samples with this given label")
    estimated_errors: float = Field(description="errors found plus the model's estimate for the samples not yet known")
    model_errors: float = Field(description="the model's estimate before any review")
    reviewed: int = Field(description="samples with a decision that applies")
    found: int = Field(description="samples reviewers agree are mislabeled")


class ConfusionPairPublic(Schema):
    given: str = Field(description="the given label")
    likely: str = Field(description="the label the model's estimate says the samples likely have")
    estimated_errors: float = Field(description="errors found with this correction plus the model's estimate for the rest")
    found: int = Field(description="samples reviewers relabelled from `given` to `likely`")
    review_queue: str = Field(description="the review queue of the samples the model puts in this pair")


class NoiseEstimatePublic(Schema):
    job_id: int
    source: Literal["out_of_sample", "final"] = Field(
        description="the probabilities behind the estimate: the cross-fitted models' (out of sample) or the audit's final ones"
    )
    num_samples: int
    estimated_errors: float = Field(description="label errors the dataset likely holds: found plus the model's estimate for the rest")
    model_errors: float = Field(description="the model's estimate before any review")
    estimated_rate: float = Field(description="estimated_errors / num_samples")
    reviewed: int = Field(description="samples with a decision that applies")
    found: int = Field(description="samples reviewers agree are mislabeled")
    classes: list[ClassNoisePublic]
    pairs: list[ConfusionPairPublic] = Field(description="the given → likely pairs with the most errors, most first")
