"""Audit jobs: the training options of an audit, submitting one, and a job's state and progress."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictBool

from api.schemas.common import DbId, Schema
from core.audit_config import (
    MAX_BATCH_SIZE,
    MAX_CROSS_FIT,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MAX_LR,
    MAX_META_BATCH_SIZE,
    MAX_SEED,
    EMBEDDING_HEADS,
    AuditConfig,
    LilawConfig,
)
from core.statuses import JobStatus


class AuditSettings(Schema):
    """How to audit: the model and its training (`core.audit.AuditConfig`)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, max_length=200, description="small-cnn, mlp, cnn1d, lstm or a timm model; default: by modality"
    )
    epochs: int = Field(AuditConfig.epochs, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(AuditConfig.batch_size, ge=1, le=MAX_BATCH_SIZE)
    lr: float = Field(AuditConfig.lr, gt=0, le=MAX_LR, description="Adam learning rate of the network")
    val_fraction: float = Field(
        AuditConfig.val_fraction, ge=0, lt=1, description="share of samples in the validation split"
    )
    weighting: Literal["lilaw", "none", "fbr"] = Field(
        "lilaw",
        description="lilaw: LiLAW's meta-learned weights (the default); none: plain training; fbr: "
        "Feature-Based Reweighting, which needs a trusted set (a re-audit with use_verdicts_as_trusted)",
    )
    val_split: Literal["fixed", "rotate"] = Field(
        AuditConfig.val_split,
        description="fixed: one held-out validation split for the whole run; rotate: the held-out fold "
        "rotates over the epochs, so every sample is also trained on (ignored with a trusted set)",
    )
    split_calibration: StrictBool = Field(
        AuditConfig.split_calibration,
        description="map held-out samples' scores by quantile onto the trained samples' before ranking",
    )
    loss: Literal["ce", "focal"] = "ce"
    inject_noise: str | None = Field(
        None,
        description="KIND:RATE label noise for evaluation; uniform, asymmetric, adjacent or instance",
        examples=["uniform:0.3"],
    )
    seed: int = Field(AuditConfig.seed, ge=0, le=MAX_SEED)
    cross_fit: int = Field(0, ge=0, le=MAX_CROSS_FIT, description="K >= 2: K-fold confident-learning scores too")
    meta_batch_size: int = Field(
        LilawConfig.meta_batch_size, ge=1, le=MAX_META_BATCH_SIZE, description="validation samples per meta step"
    )
    clamp: bool = Field(False, description="keep alpha >= 1 and beta <= delta <= alpha after every meta step")
    pretrained: bool = Field(False, description="timm backbones: start from pretrained weights in the worker's cache")
    image_size: int | None = Field(None, ge=1, le=MAX_IMAGE_SIZE, description="resize images to this size inside the model")
    embeddings: str | None = Field(
        None, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$",
        description="embeddings mode (images): this timm backbone, frozen, with the weights the operator put in "
        "the data dir's backbones folder, computes each image's features once (cached per version); "
        "embeddings_head trains on them. Leave model and pretrained unset",
        examples=["resnet18"],
    )  # fmt: skip
    embeddings_head: Literal[EMBEDDING_HEADS] = Field("linear", description="what embeddings mode trains: linear or mlp")

    def training_options(self) -> dict[str, Any]:
        """The options the request names, by their `AuditConfig` names (see `core.services.audit_options`)."""
        options = self.model_dump(include=set(AuditSettings.model_fields), exclude_unset=True)
        if "embeddings" in options:
            options["embeddings_backbone"] = options.pop("embeddings")
        return options


class JobCreate(AuditSettings):
    dataset_id: DbId
    version: DbId | None = Field(None, description="dataset version; default: the latest")


class ProgressPublic(Schema):
    epoch: int = Field(description="the epoch in progress (1-based; 0 before training starts)")
    total_epochs: int | None
    step: int = Field(description="training steps done so far, over all epochs")
    total_steps: int | None = Field(description="training steps of the whole run, once known")
    eta_seconds: float | None


class TrajectoryPointPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    epoch: int
    step: int
    alpha: float
    beta: float
    delta: float


class JobPublic(Schema):
    id: int
    dataset_id: int
    dataset_version: int
    status: JobStatus
    config: dict[str, Any] = Field(description="the audit configuration (core.audit.AuditConfig)")
    progress: ProgressPublic
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    celery_task_id: str | None
    timings: dict[str, float] | None = Field(description="seconds spent per phase, when the job has finished")
    result: dict[str, Any] | None = Field(description="the run's summary: model, device, test-split metrics...")
    has_model: bool = Field(description="the trained model can be downloaded")
    previous_job_id: int | None = Field(description="a re-audit: the earlier job it is compared with")
    warm_start: bool = Field(description="a re-audit started from the previous job's model")
    schedule_id: int | None = Field(description="the schedule that started it")
    trajectory: list[TrajectoryPointPublic] | None = Field(
        None, description="alpha, beta, delta after the meta steps, evenly downsampled"
    )
