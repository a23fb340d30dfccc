"""A job's results: ranked suspects, one sample's dynamics, detection metrics (and their
recomputation against the current known flags) and charts, the score table and the trained model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from api.deps import CurrentOwner, SessionDep, SessionFactoryDep, SettingsDep
from api.downloads import csv_bytes, parquet_bytes
from api.presenters import detection_charts_public, job_metrics_public, sample_dynamics_public, suspect_page_public
from api.schemas import (
    DetectionChartsPublic,
    ErrorPublic,
    JobMetricsPublic,
    SampleDynamicsPublic,
    SplitName,
    SuspectPagePublic,
)
from api.schemas.common import DbId, SampleIndex, ScoreValue
from core.dynamics import SPLIT_NAMES
from core.services import InvalidParameterError, jobs, results
from core.services.artifacts import job_artifacts
from core.settings import Settings
from core.store.models import AuditJob

router = APIRouter(
    prefix="/jobs/{job_id}",
    tags=["results"],
    responses={
        401: {"model": ErrorPublic, "description": "missing or invalid API key"},
        404: {"model": ErrorPublic, "description": "no such job (or sample) of the caller's"},
        422: {"model": ErrorPublic, "description": "invalid request"},
    },
)

SPLIT_CODES = {name: code for code, name in SPLIT_NAMES.items()}
PARQUET_MEDIA_TYPE = "application/vnd.apache.parquet"


@router.get("/suspects")
def list_suspects(
    job_id: DbId,
    owner: CurrentOwner,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(description="the `next_cursor` of the previous page")] = None,
    label: Annotated[str | None, Query(description="only samples with this given label")] = None,
    predicted: Annotated[str | None, Query(description="only samples the model labels so")] = None,
    split: SplitName | None = None,
    score: Annotated[str | None, Query(description="order by this aggregated score instead of the stored rank")] = None,
    epoch: Annotated[DbId | None, Query(description="order by this epoch's score")] = None,
    min_score: Annotated[ScoreValue | None, Query(description="only samples whose ordering score is at least this")] = None,
) -> SuspectPagePublic:
    """Suspected mislabels, most suspicious first (every score is higher = more suspicious)."""
    job = jobs.get_job(session, owner.id, job_id)
    class_names = job.dataset_version.class_names
    page = results.suspects_page(
        session,
        job,
        job_artifacts(settings, job),
        limit=limit,
        cursor=cursor,
        score=score,
        epoch=epoch,
        label=class_index(label, class_names),
        predicted=class_index(predicted, class_names),
        split=None if split is None else SPLIT_CODES[split],
        min_score=min_score,
    )
    return suspect_page_public(page, class_names)


@router.get("/samples/{sample_index}/dynamics")
def get_sample_dynamics(
    job_id: DbId, sample_index: SampleIndex, owner: CurrentOwner, session: SessionDep, settings: SettingsDep
) -> SampleDynamicsPublic:
    """One sample's LiLAW weights, loss and prediction at every stored epoch, with its scores."""
    job = jobs.get_job(session, owner.id, job_id)
    history = results.sample_history(session, job, sample_index, job_artifacts(settings, job))
    return sample_dynamics_public(job.id, history, job.dataset_version.class_names)


@router.get("/metrics")
def get_metrics(job_id: DbId, owner: CurrentOwner, session: SessionDep, settings: SettingsDep) -> JobMetricsPublic:
    """AUROC, AUPRC (mislabeled and clean as positive) and precision/recall@k of every score
    against the known flags, aggregated and per epoch; recomputed first when reviewers' decisions
    changed the known flags since."""
    job = jobs.get_job(session, owner.id, job_id)
    metrics = results.current_metrics(session, job, job_artifacts(settings, job))
    return job_metrics_public(job.id, results.default_score(job), metrics)


@router.get("/charts", responses={409: {"model": ErrorPublic, "description": "the job has no scores yet"}})
def get_charts(
    job_id: DbId,
    owner: CurrentOwner,
    session: SessionDep,
    settings: SettingsDep,
    bins: Annotated[int, Query(ge=1, le=200)] = 40,
    max_points: Annotated[int, Query(ge=2, le=2000, description="points per curve")] = 200,
) -> DetectionChartsPublic:
    """What the job page draws: the histogram of the default score's raw quantity for known
    mislabeled, known clean and unknown samples, and every score's ROC and precision-recall
    curves against the known flags."""
    job = jobs.get_job(session, owner.id, job_id)
    charts = results.detection_charts(session, job, job_artifacts(settings, job), bins=bins, max_points=max_points)
    return detection_charts_public(job.id, charts)


@router.post(
    "/metrics/recompute",
    responses={409: {"model": ErrorPublic, "description": "the job has not succeeded, or no flag is known"}},
)
def recompute_metrics(job_id: DbId, owner: CurrentOwner, session: SessionDep, settings: SettingsDep) -> JobMetricsPublic:
    """Recompute a finished job's metrics against its dataset version's current known flags
    (against the injected flags for a job with injected noise)."""
    job = jobs.get_job(session, owner.id, job_id)
    results.recompute_metrics(session, job, job_artifacts(settings, job))
    return job_metrics_public(job.id, results.default_score(job), results.job_metrics(session, job.id))


@router.get(
    "/scores.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "the score table"},
        409: {"model": ErrorPublic, "description": "the job has no scores yet"},
    },
)
def download_scores_csv(
    job_id: DbId, owner: CurrentOwner, session: SessionDep, sessions: SessionFactoryDep, settings: SettingsDep
) -> StreamingResponse:
    """Every sample's rank, labels, split, scores and known flag, in rank order."""
    return _score_table(session, sessions, jobs.get_job(session, owner.id, job_id), settings, "csv")


@router.get(
    "/scores.parquet",
    response_class=StreamingResponse,
    responses={
        200: {"content": {PARQUET_MEDIA_TYPE: {}}, "description": "the score table"},
        409: {"model": ErrorPublic, "description": "the job has no scores yet"},
    },
)
def download_scores_parquet(
    job_id: DbId, owner: CurrentOwner, session: SessionDep, sessions: SessionFactoryDep, settings: SettingsDep
) -> StreamingResponse:
    """The score table of `scores.csv` as Parquet, one row group per chunk of rows."""
    return _score_table(session, sessions, jobs.get_job(session, owner.id, job_id), settings, "parquet")


@router.get(
    "/model",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the trained model's file"}},
)
def download_model(job_id: DbId, owner: CurrentOwner, session: SessionDep, settings: SettingsDep) -> FileResponse:
    """The trained model, as the worker saved it."""
    job = jobs.get_job(session, owner.id, job_id)
    path = results.model_path(job, job_artifacts(settings, job))
    return FileResponse(path, filename=f"job-{job.id}-model{path.suffix}", media_type="application/octet-stream")


def class_index(name: str | None, class_names: list[str]) -> int | None:
    if name is None:
        return None
    if name not in class_names:
        raise InvalidParameterError(f"unknown label {name!r}; the labels are {', '.join(class_names)}")
    return class_names.index(name)


def _score_table(
    session: Session, sessions: sessionmaker[Session], job: AuditJob, settings: Settings, fmt: str
) -> StreamingResponse:
    results.require_scores(session, job)
    encode, media_type = (csv_bytes, "text/csv") if fmt == "csv" else (parquet_bytes, PARQUET_MEDIA_TYPE)
    chunks = results.score_table_chunks(sessions, job, job.dataset_version.class_names, job_artifacts(settings, job))
    return StreamingResponse(
        encode(results.score_table_columns(job), chunks),
        media_type=media_type,
        headers={"Content-Disposition": f'attachment; filename="job-{job.id}-scores.{fmt}"'},
    )
