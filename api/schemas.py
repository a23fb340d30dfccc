"""Request (`XCreate`) and response (`XPublic`) bodies of the API.

Every score is oriented higher = more suspicious; `orientation` fields say what each one is.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.audit import AuditConfig
from core.dataset import Modality
from core.dynamics import SPLIT_NAMES
from core.lilaw import LilawConfig
from core.scores import ORIENTATION, SCORE_NAMES
from core.services.decisions import SampleDecisions
from core.services.results import DetectionCharts, RankedSuspect, SampleHistory, SuspectPage
from core.services.reviews import QueueItem, ReviewProgress, ReviewQueue
from core.services.webhooks import MAX_SECRET_LENGTH, MAX_URL_LENGTH, MIN_SECRET_LENGTH
from core.store.models import AuditJob, DeliveryStatus, JobMetric, JobStatus, LilawTrajectoryPoint
from core.verdicts import Verdict

SplitName = Literal["train", "val"]


class ErrorPublic(BaseModel):
    detail: str


# ---------------------------------------------------------------- datasets


class BuiltinDatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    builtin: str = Field(description="a built-in dataset: digits (bundled) or fashion-mnist (when installed)")
    name: str | None = Field(None, min_length=1, max_length=200, description="default: the built-in's name")


class DatasetUploadForm(BaseModel):
    """The text fields sent with an uploaded file."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200, description="default: the file name without suffix")
    modality: Modality | None = Field(None, description="default: decided by the file (see core.loaders)")


class DatasetVersionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    format: str
    modality: str
    num_samples: int
    num_classes: int
    class_names: list[str]
    blob_sha256: str
    parent_version: int | None = Field(description="the version this one was made from (append, relabel)")
    change: dict[str, Any] | None = Field(description="how it was made from its parent: kind, counts, duplicates")
    created_at: datetime


class DatasetPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime
    versions: list[DatasetVersionPublic]


class FlagCreate(BaseModel):
    sample_id: str
    is_mislabeled: bool | None = Field(description="null: not known")


class FlagsPublic(BaseModel):
    dataset_id: int
    version: int
    updated: int
    num_known: int = Field(description="samples of the version with a known flag")
    num_mislabeled: int = Field(description="samples of the version known to be mislabeled")


# ---------------------------------------------------------------- jobs


class AuditSettings(BaseModel):
    """How to audit: the model and its training (`core.audit.AuditConfig`)."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(
        None, max_length=200, description="small-cnn, mlp, cnn1d, lstm or a timm model; default: by modality"
    )
    epochs: int = Field(AuditConfig.epochs, ge=1)
    batch_size: int = Field(AuditConfig.batch_size, ge=1)
    lr: float = Field(AuditConfig.lr, gt=0, description="Adam learning rate of the network")
    val_fraction: float = Field(
        AuditConfig.val_fraction, ge=0, lt=1, description="share of samples in the validation split"
    )
    weighting: Literal["lilaw", "none"] = "lilaw"
    loss: Literal["ce", "focal"] = "ce"
    inject_noise: str | None = Field(
        None,
        description="KIND:RATE label noise for evaluation; uniform, asymmetric, adjacent or instance",
        examples=["uniform:0.3"],
    )
    seed: int = AuditConfig.seed
    cross_fit: int = Field(0, ge=0, description="K >= 2: K-fold confident-learning scores too")
    meta_batch_size: int = Field(LilawConfig.meta_batch_size, ge=1, description="validation samples per meta step")
    clamp: bool = Field(False, description="keep alpha >= 1 and beta <= delta <= alpha after every meta step")
    pretrained: bool = Field(False, description="timm backbones: start from pretrained weights in the worker's cache")
    image_size: int | None = Field(None, ge=1, description="resize images to this size inside the model")

    def audit_config(self, based_on: AuditConfig | None = None) -> AuditConfig:
        """The configuration asked for; with `based_on`, the fields the request leaves out keep
        their values there (a re-audit that changes only the epochs keeps the rest)."""
        config = self._config()
        if based_on is None:
            return config
        lilaw_fields = {"meta_batch_size", "clamp"}
        given = self.model_fields_set & set(AuditSettings.model_fields)
        changes = {name: getattr(config, name) for name in given - lilaw_fields}
        lilaw = replace(based_on.lilaw, **{name: getattr(config.lilaw, name) for name in given & lilaw_fields})
        return replace(based_on, **changes, lilaw=lilaw)

    def _config(self) -> AuditConfig:
        return AuditConfig(
            model=self.model,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            val_fraction=self.val_fraction,
            weighting=self.weighting,
            loss=self.loss,
            seed=self.seed,
            lilaw=LilawConfig(meta_batch_size=self.meta_batch_size, clamp=self.clamp),
            inject_noise=self.inject_noise,
            cross_fit=self.cross_fit,
            pretrained=self.pretrained,
            image_size=self.image_size,
        )


class JobCreate(AuditSettings):
    dataset_id: int
    version: int | None = Field(None, description="dataset version; default: the latest")


class ProgressPublic(BaseModel):
    epoch: int = Field(description="the epoch in progress (1-based; 0 before training starts)")
    total_epochs: int | None
    step: int = Field(description="training steps done so far, over all epochs")
    total_steps: int | None = Field(description="training steps of the whole run, once known")
    eta_seconds: float | None


class TrajectoryPointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    epoch: int
    step: int
    alpha: float
    beta: float
    delta: float


class JobPublic(BaseModel):
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

    @classmethod
    def from_job(cls, job: AuditJob, trajectory: list[LilawTrajectoryPoint] | None = None) -> JobPublic:
        return cls(
            id=job.id,
            dataset_id=job.dataset_version.dataset_id,
            dataset_version=job.dataset_version.version,
            status=job.status,
            config=job.config,
            progress=ProgressPublic(
                epoch=job.epoch,
                total_epochs=job.total_epochs,
                step=job.step,
                total_steps=job.total_steps,
                eta_seconds=job.eta_seconds,
            ),
            heartbeat_at=job.heartbeat_at,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error=job.error,
            celery_task_id=job.celery_task_id,
            timings=(job.result or {}).get("timings"),
            result=job.result,
            has_model=bool((job.result_paths or {}).get("model")),
            previous_job_id=job.previous_job_id,
            warm_start=job.warm_start,
            schedule_id=job.schedule_id,
            trajectory=None if trajectory is None else [TrajectoryPointPublic.model_validate(p) for p in trajectory],
        )


# ---------------------------------------------------------------- results


class SuspectPublic(BaseModel):
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

    @classmethod
    def from_ranked(cls, ranked: RankedSuspect, class_names: list[str]) -> SuspectPublic:
        suspect = ranked.suspect
        return cls(
            rank=suspect.rank,
            sample_index=suspect.sample_index,
            sample_id=suspect.sample_id,
            label=class_names[suspect.label],
            predicted=None if suspect.predicted is None else class_names[suspect.predicted],
            split=None if suspect.split is None else SPLIT_NAMES[suspect.split],
            score=ranked.score,
            p_label=suspect.p_label,
            p_max=suspect.p_max,
            is_mislabeled=suspect.is_mislabeled,
        )


class SuspectPagePublic(BaseModel):
    score: str = Field(description="the score the list is ordered by")
    epoch: int | None = Field(description="the epoch of a per-epoch score; null for the aggregate")
    orientation: str
    items: list[SuspectPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")

    @classmethod
    def from_page(cls, page: SuspectPage, class_names: list[str]) -> SuspectPagePublic:
        return cls(
            score=page.score,
            epoch=page.epoch,
            orientation=ORIENTATION[page.score]["description"],
            items=[SuspectPublic.from_ranked(ranked, class_names) for ranked in page.suspects],
            next_cursor=page.next_cursor,
        )


class EpochDynamicsPublic(BaseModel):
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


class SampleDynamicsPublic(BaseModel):
    job_id: int
    sample_index: int
    sample_id: str
    label: str
    is_mislabeled: bool | None
    rank: int | None
    scores: dict[str, float | None] | None
    epochs: list[EpochDynamicsPublic]

    @classmethod
    def from_history(cls, job_id: int, history: SampleHistory, class_names: list[str]) -> SampleDynamicsPublic:
        sample = history.sample
        return cls(
            job_id=job_id,
            sample_index=sample.sample_index,
            sample_id=sample.sample_id,
            label=class_names[history.label],
            is_mislabeled=history.is_mislabeled,
            rank=None if history.score is None else history.score.rank,
            scores=None if history.score is None else history.score.scores(),
            epochs=[
                EpochDynamicsPublic(
                    epoch=row.epoch,
                    split=SPLIT_NAMES[row.split],
                    predicted=class_names[row.predicted],
                    w_alpha=row.w_alpha,
                    w_beta=row.w_beta,
                    w_delta=row.w_delta,
                    w=row.w,
                    loss=row.loss,
                    p_label=row.p_label,
                    p_max=row.p_max,
                    margin=row.margin,
                    el2n=row.el2n,
                )
                for row in history.epochs
            ],
        )


class DetectionPublic(BaseModel):
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


class ScoreMetricsPublic(BaseModel):
    score: str
    orientation: str
    aggregate: dict[str, DetectionPublic] = Field(
        description="the aggregated score's metrics by sample split: all, train (train split only)"
    )
    per_epoch: list[EpochDetectionPublic]


class JobMetricsPublic(BaseModel):
    job_id: int
    default_score: str
    scores: list[ScoreMetricsPublic]

    @classmethod
    def from_metrics(cls, job_id: int, default_score: str, metrics: list[JobMetric]) -> JobMetricsPublic:
        by_score: dict[str, ScoreMetricsPublic] = {}
        for metric in metrics:
            entry = by_score.setdefault(
                metric.score,
                ScoreMetricsPublic(
                    score=metric.score,
                    orientation=ORIENTATION.get(metric.score, {}).get("description", ""),
                    aggregate={},
                    per_epoch=[],
                ),
            )
            if metric.epoch is None:
                entry.aggregate[metric.split] = DetectionPublic.model_validate(metric)
            else:
                entry.per_epoch.append(EpochDetectionPublic.model_validate(metric))
        order = {name: i for i, name in enumerate(SCORE_NAMES)}
        scores = sorted(by_score.values(), key=lambda entry: (order.get(entry.score, len(order)), entry.score))
        return cls(job_id=job_id, default_score=default_score, scores=scores)


class HistogramPublic(BaseModel):
    edges: list[float] = Field(description="bins + 1 bin edges")
    counts: dict[str, list[int]] = Field(description="counts per bin of the mislabeled, clean and unknown samples")


class CurvesPublic(BaseModel):
    auroc: float
    auprc_mislabeled: float
    fpr: list[float]
    tpr: list[float]
    recall: list[float] = Field(description="precision-recall curve, mislabeled = positive")
    precision: list[float]


class DetectionChartsPublic(BaseModel):
    job_id: int
    score: str = Field(description="the default score, whose raw quantity the histogram shows")
    suspicious_when: Literal["low", "high"]
    flags_source: str = Field(description="where the known flags come from")
    num_known: int
    num_mislabeled: int
    histogram: HistogramPublic
    curves: dict[str, CurvesPublic] = Field(description="by score; empty until both classes are known")

    @classmethod
    def from_charts(cls, job_id: int, charts: DetectionCharts) -> DetectionChartsPublic:
        return cls(job_id=job_id, **asdict(charts))


# ---------------------------------------------------------------- review


class DecisionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sample_index: int = Field(ge=0)
    verdict: Verdict = Field(description="keep the label, relabel it, or remove the sample (ambiguous)")
    label: str | None = Field(None, description="relabel only: the new label")


class DecisionPublic(BaseModel):
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


class SampleDecisionsPublic(BaseModel):
    sample_index: int
    sample_id: str
    label: str = Field(description="the job's label of the sample")
    is_mislabeled: bool | None = Field(description="the reviewers' flag, where they agree")
    outcome: str | None = Field(description="the label they agree on, or '(removed)'; null when they conflict")
    conflict: bool
    known_mislabeled: bool | None = Field(description="the job's flag apart from decisions: injected, else uploaded")
    agrees: bool | None = Field(description="is_mislabeled == known_mislabeled, when both are known")
    decisions: list[DecisionPublic] = Field(description="each reviewer's decision that counts, oldest first")

    @classmethod
    def from_review(cls, review: SampleDecisions) -> SampleDecisionsPublic:
        return cls(
            sample_index=review.sample_index,
            sample_id=review.sample_id,
            label=review.label,
            is_mislabeled=review.flag,
            outcome=review.outcome,
            conflict=review.conflict,
            known_mislabeled=review.reference_flag,
            agrees=review.agrees,
            decisions=[DecisionPublic.model_validate(decision) for decision in review.decisions],
        )


class DecisionSummaryPublic(BaseModel):
    decided: int = Field(description="samples with a decision that applies to the job's label")
    mislabeled: int
    clean: int
    conflicts: int
    compared: int = Field(description="decided samples whose known flag (injected or uploaded) is known")
    agreeing: int
    agreement: float | None = Field(description="agreeing / compared")


class JobDecisionsPublic(BaseModel):
    job_id: int
    summary: DecisionSummaryPublic
    samples: list[SampleDecisionsPublic]

    @classmethod
    def from_reviews(cls, job_id: int, reviews: list[SampleDecisions]) -> JobDecisionsPublic:
        decided = [review for review in reviews if review.applicable]
        compared = [review.agrees for review in decided if review.agrees is not None]
        return cls(
            job_id=job_id,
            summary=DecisionSummaryPublic(
                decided=len(decided),
                mislabeled=sum(review.flag is True for review in decided),
                clean=sum(review.flag is False for review in decided),
                conflicts=sum(review.conflict for review in decided),
                compared=len(compared),
                agreeing=sum(compared),
                agreement=sum(compared) / len(compared) if compared else None,
            ),
            samples=[SampleDecisionsPublic.from_review(review) for review in reviews],
        )


class ClassProbabilityPublic(BaseModel):
    label: str
    probability: float


class WeightHistoryPublic(BaseModel):
    epoch: list[int]
    w_alpha: list[float | None]
    w_beta: list[float | None]
    w_delta: list[float | None]


class QueueItemPublic(BaseModel):
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

    @classmethod
    def from_item(cls, job_id: int, item: QueueItem, class_names: list[str], modality: str) -> QueueItemPublic:
        suspect = item.suspect.suspect
        thumbnail = f"/jobs/{job_id}/samples/{suspect.sample_index}/thumbnail.png"
        return cls(
            rank=suspect.rank,
            sample_index=suspect.sample_index,
            sample_id=suspect.sample_id,
            label=class_names[suspect.label],
            split=None if suspect.split is None else SPLIT_NAMES[suspect.split],
            score=suspect.default_score,
            top_classes=[
                ClassProbabilityPublic(label=class_names[index], probability=p) for index, p in item.top_classes
            ],
            weights=None if item.weights is None else WeightHistoryPublic(**item.weights),
            values=item.values,
            thumbnail_url=thumbnail if modality == "image" else None,
            review=None if item.review is None else SampleDecisionsPublic.from_review(item.review),
        )


class ReviewProgressPublic(BaseModel):
    total: int = Field(description="samples passing the filters (review status aside)")
    decided: int
    remaining: int
    conflicts: int

    @classmethod
    def from_progress(cls, progress: ReviewProgress) -> ReviewProgressPublic:
        return cls(
            total=progress.total, decided=progress.decided, remaining=progress.remaining, conflicts=progress.conflicts
        )


class ReviewQueuePublic(BaseModel):
    items: list[QueueItemPublic]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")
    progress: ReviewProgressPublic | None = Field(description="on the first page (without a cursor)")

    @classmethod
    def from_queue(cls, job: AuditJob, queue: ReviewQueue) -> ReviewQueuePublic:
        names, modality = job.dataset_version.class_names, job.dataset_version.modality
        return cls(
            items=[QueueItemPublic.from_item(job.id, item, names, modality) for item in queue.items],
            next_cursor=queue.next_cursor,
            progress=None if queue.progress is None else ReviewProgressPublic.from_progress(queue.progress),
        )


# ---------------------------------------------------------------- growing datasets and re-audits


class AppendPublic(BaseModel):
    dataset: DatasetPublic
    version: int = Field(description="the new version")
    num_added: int
    num_duplicates: int = Field(description="samples left out: their content is in the dataset already")
    duplicates: list[dict[str, str]] = Field(description="the first 100: sample_id and the duplicate_of it")
    new_classes: list[str]


class RelabelPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sample_id: str
    old_label: str
    new_label: str


class VersionDiffPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    base: int
    version: int
    num_added: int
    num_removed: int
    num_relabeled: int
    num_unchanged: int
    added: list[str] = Field(description="the first 100 sample ids")
    removed: list[str] = Field(description="the first 100 sample ids")
    relabeled: list[RelabelPublic] = Field(description="the first 100")


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(None, max_length=120, description="five-field cron expression, UTC", examples=["0 3 * * 1"])
    interval_seconds: int | None = Field(None, ge=60, description="instead of cron: run every so many seconds")
    warm_start: bool = Field(False, description="start each re-audit from the previous job's model")
    enabled: bool = True
    audit: AuditSettings = Field(
        default_factory=AuditSettings,
        description="how the re-audits train; options left out are those of the dataset's newest succeeded job",
    )


class SchedulePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    dataset_id: int
    cron: str | None
    interval_seconds: int | None
    warm_start: bool
    enabled: bool
    config: dict[str, Any]
    next_run_at: datetime
    last_run_at: datetime | None
    last_outcome: str | None = Field(description="the last run: the job it started, or why it skipped")
    created_at: datetime
    updated_at: datetime


class ReauditCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, description="re-audit even if the latest version is audited already")
    warm_start: bool = Field(False, description="start from the previous job's model (fewer epochs suffice)")
    audit: AuditSettings | None = Field(
        None, description="training options to change; the others are those of the previous job"
    )


class ReauditPublic(BaseModel):
    job: JobPublic | None = Field(description="the re-audit queued; null when skipped")
    skipped: str | None = Field(description="why nothing was queued")


class ReportedSamplePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    sample_id: str
    sample_index: int
    rank: int | None
    previous_rank: int | None
    is_mislabeled: bool | None


class ReauditReportPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    job_id: int
    previous_job_id: int | None
    version: int
    previous_version: int | None
    num_samples: int
    num_suspected: int = Field(description="samples whose AUM is negative (see core.services.reaudits)")
    counts: dict[str, int]
    samples: dict[str, list[ReportedSamplePublic]] = Field(
        description="per list, its most suspicious samples: newly_suspected, no_longer_suspected, "
        "still_suspected, new_samples, new_suspected, reopened"
    )


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        max_length=MAX_URL_LENGTH,
        description="an http:// or https:// URL; redirects are not followed",
        examples=["https://example.org/hooks/lilaw"],
    )
    secret: str | None = Field(
        None,
        min_length=MIN_SECRET_LENGTH,
        max_length=MAX_SECRET_LENGTH,
        description="signs every call; default: a random one, returned once",
    )


class WebhookPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    dataset_id: int
    url: str
    created_at: datetime = Field(description="when this URL and secret were set")


class WebhookCreated(WebhookPublic):
    secret: str = Field(description="signs every call (X-LiLAW-Signature); shown only in this response")


class DeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    job_id: int | None
    event: str
    url: str
    status: DeliveryStatus
    attempts: int = Field(description="failed attempts so far")
    next_attempt_at: datetime | None = Field(description="when it is tried next (pending only)")
    last_status_code: int | None = Field(description="the receiver's last answer; null when none came")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
