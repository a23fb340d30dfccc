"""Response bodies (`api.schemas`) made from what the store and the services return: a job's row,
pages of suspects, a sample's history, metrics, charts, decisions and the review queue. Class
indices become class names and split codes split names here."""

from __future__ import annotations

from dataclasses import asdict

from api.schemas import (
    ClassProbabilityPublic,
    DecisionPublic,
    DecisionSummaryPublic,
    DetectionChartsPublic,
    DetectionPublic,
    EpochDetectionPublic,
    EpochDynamicsPublic,
    JobDecisionsPublic,
    JobMetricsPublic,
    JobPublic,
    ProgressPublic,
    QueueItemPublic,
    ReviewProgressPublic,
    ReviewQueuePublic,
    SampleDecisionsPublic,
    SampleDynamicsPublic,
    ScoreMetricsPublic,
    SuspectPagePublic,
    SuspectPublic,
    TrajectoryPointPublic,
    WeightHistoryPublic,
)
from api.schemas.review import CommentPublic
from core.dynamics import SPLIT_NAMES
from core.score_registry import ORIENTATION, SCORE_NAMES
from core.services.decisions import SampleDecisions
from core.services.results import DetectionCharts, RankedSuspect, SampleHistory, SuspectPage
from core.services.reviews import QueueItem, ReviewQueue
from core.store.models import AuditJob, JobMetric, LilawTrajectoryPoint


def job_public(job: AuditJob, trajectory: list[LilawTrajectoryPoint] | None = None) -> JobPublic:
    return JobPublic(
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


def suspect_public(ranked: RankedSuspect, class_names: list[str]) -> SuspectPublic:
    suspect = ranked.suspect
    return SuspectPublic(
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


def suspect_page_public(page: SuspectPage, class_names: list[str]) -> SuspectPagePublic:
    return SuspectPagePublic(
        score=page.score,
        epoch=page.epoch,
        orientation=ORIENTATION[page.score]["description"],
        items=[suspect_public(ranked, class_names) for ranked in page.suspects],
        next_cursor=page.next_cursor,
    )


def sample_dynamics_public(job_id: int, history: SampleHistory, class_names: list[str]) -> SampleDynamicsPublic:
    sample = history.sample
    return SampleDynamicsPublic(
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
                fbr_agreement=row.fbr_agreement,
            )
            for row in history.epochs
        ],
    )


def job_metrics_public(job_id: int, default_score: str, metrics: list[JobMetric]) -> JobMetricsPublic:
    """The metric rows grouped by score, in the registry's order of scores."""
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
    return JobMetricsPublic(job_id=job_id, default_score=default_score, scores=scores)


def detection_charts_public(job_id: int, charts: DetectionCharts) -> DetectionChartsPublic:
    return DetectionChartsPublic(job_id=job_id, **asdict(charts))


# ---------------------------------------------------------------- review


def sample_decisions_public(review: SampleDecisions) -> SampleDecisionsPublic:
    return SampleDecisionsPublic(
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


def job_decisions_public(job_id: int, reviews: list[SampleDecisions]) -> JobDecisionsPublic:
    decided = [review for review in reviews if review.applicable]
    compared = [review.agrees for review in decided if review.agrees is not None]
    return JobDecisionsPublic(
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
        samples=[sample_decisions_public(review) for review in reviews],
    )


def queue_item_public(job_id: int, item: QueueItem, class_names: list[str], modality: str) -> QueueItemPublic:
    suspect = item.suspect.suspect
    thumbnail = f"/jobs/{job_id}/samples/{suspect.sample_index}/thumbnail.png"
    return QueueItemPublic(
        rank=suspect.rank,
        sample_index=suspect.sample_index,
        sample_id=suspect.sample_id,
        label=class_names[suspect.label],
        split=None if suspect.split is None else SPLIT_NAMES[suspect.split],
        score=suspect.default_score,
        top_classes=[ClassProbabilityPublic(label=class_names[index], probability=p) for index, p in item.top_classes],
        weights=None if item.weights is None else WeightHistoryPublic(**item.weights),
        values=item.values,
        thumbnail_url=thumbnail if modality == "image" else None,
        review=None if item.review is None else sample_decisions_public(item.review),
        comments=[CommentPublic.model_validate(comment) for comment in item.comments],
    )


def review_queue_public(job: AuditJob, queue: ReviewQueue) -> ReviewQueuePublic:
    names, modality = job.dataset_version.class_names, job.dataset_version.modality
    return ReviewQueuePublic(
        items=[queue_item_public(job.id, item, names, modality) for item in queue.items],
        next_cursor=queue.next_cursor,
        progress=None if queue.progress is None else ReviewProgressPublic.model_validate(queue.progress),
    )
