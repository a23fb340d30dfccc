"""Reviewing a job's suspects: the review queue, sample thumbnails, decisions (recorded, undone,
listed with conflicts and agreement) and the export of corrected labels."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from api.deps import CurrentReviewer, SessionDep, SessionFactoryDep, SettingsDep
from api.downloads import csv_bytes, json_array_bytes
from api.presenters import job_decisions_public, review_queue_public
from api.routes.results import SPLIT_CODES, class_index
from api.schemas import (
    DecisionCreate,
    DecisionPublic,
    ErrorPublic,
    JobDecisionsPublic,
    ReviewQueuePublic,
    SplitName,
)
from api.schemas.common import DbId, SampleIndex, ScoreValue
from core.column_ranges import INT32_MAX
from api.schemas.review import ReviewerDecisionPublic
from core.services import assignments, decisions, jobs, reviews, sample_images
from core.services.artifacts import job_artifacts
from core.services.decisions import Reviewer
from core.services.previews import THUMBNAIL_SIDE
from core.services.reviews import EXPORT_COLUMNS, ExportedSample, QueueScope, ReviewStatus
from core.settings import Settings
from core.store.models import AuditJob

router = APIRouter(
    tags=["review"],
    responses={
        401: {"model": ErrorPublic, "description": "missing or invalid API key"},
        404: {"model": ErrorPublic, "description": "no such job, sample or decision of the caller's"},
        422: {"model": ErrorPublic, "description": "invalid request"},
    },
)

THUMBNAIL_CACHE_CONTROL = "private, max-age=31536000, immutable"
QUEUE_SCOPE_HELP = (
    "mine: the caller's assigned samples; all: every sample; auto (default): mine once the job has "
    "assignments, unless the caller is its lead or an adjudicator"
)


@router.get(
    "/jobs/{job_id}/review-queue",
    responses={409: {"model": ErrorPublic, "description": "the job has no scores yet"}},
)
def review_queue(
    job_id: DbId,
    reviewer: CurrentReviewer,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="the `next_cursor` of the previous page")] = None,
    label: Annotated[str | None, Query(description="only samples with this label")] = None,
    split: SplitName | None = None,
    min_score: Annotated[ScoreValue | None, Query(description="only samples whose default score is at least this")] = None,
    status: ReviewStatus = ReviewStatus.UNDECIDED,
    given: Annotated[str | None, Query(description="with `likely`: one pair of GET /jobs/{id}/noise-estimate; the given label")] = None,
    likely: Annotated[str | None, Query(description="only samples the noise estimate says likely have this label")] = None,
    sample_id: Annotated[
        str | None, Query(max_length=255, description="only the sample with this id (a search or a link to it)")
    ] = None,
    scope: Annotated[QueueScope, Query(description=QUEUE_SCOPE_HELP)] = QueueScope.AUTO,
) -> ReviewQueuePublic:
    """The job's suspects in rank order with what a reviewer decides on: the sample (a thumbnail
    URL, or a row's values, or a series), its label, the model's top classes, its W_alpha / W_beta /
    W_delta trajectory and the decisions on it; the first page also says how far the review is."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    session.commit()  # a first visit renders previews: not under SQLite's write lock
    queue = reviews.review_queue(
        session,
        job,
        settings,
        limit=limit,
        cursor=cursor,
        label=class_index(label, job.dataset_version.class_names),
        split=None if split is None else SPLIT_CODES[split],
        min_score=min_score,
        status=status,
        sample_id=sample_id,
        given=class_index(given, job.dataset_version.class_names),
        likely=class_index(likely, job.dataset_version.class_names),
        viewer=reviewer,
        scope=scope,
    )
    return review_queue_public(job, queue)


@router.get(
    "/jobs/{job_id}/samples/{sample_index}/thumbnail.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the thumbnail"}, 304: {"description": "unchanged"}},
)
def get_thumbnail(
    job_id: DbId,
    sample_index: SampleIndex,
    reviewer: CurrentReviewer,
    session: SessionDep,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A PNG thumbnail of an image sample (longer side at most 128 px), rendered once per dataset
    and cached: send the ETag back in If-None-Match."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    return _cached_png(session, job, f"{THUMBNAIL_SIDE}-{sample_index}", if_none_match,
                       lambda: reviews.thumbnail(job, settings, sample_index))  # fmt: skip


@router.get(
    "/jobs/{job_id}/samples/{sample_index}/image.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "the image"}, 304: {"description": "unchanged"}},
)
def get_full_image(
    job_id: DbId,
    sample_index: SampleIndex,
    reviewer: CurrentReviewer,
    session: SessionDep,
    settings: SettingsDep,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """A PNG of an image sample at the dataset's size (the thumbnail may be scaled down), cached
    like the thumbnails."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    return _cached_png(session, job, f"full-{sample_index}", if_none_match,
                       lambda: sample_images.full_image_png(job, settings, sample_index))  # fmt: skip


def _cached_png(
    session: Session, job: AuditJob, name: str, if_none_match: str | None, render: Callable[[], bytes]
) -> Response:
    """A PNG of the job's dataset version under an ETag (304 when the client has it)."""
    etag = f'"{job.dataset_version.blob_sha256[:32]}-{name}"'
    headers = {"ETag": etag, "Cache-Control": THUMBNAIL_CACHE_CONTROL}
    if if_none_match == etag:
        return Response(status_code=304, headers=headers)
    session.commit()  # the first one renders them all: not under SQLite's write lock
    return Response(render(), media_type="image/png", headers=headers)


@router.post(
    "/jobs/{job_id}/decisions",
    status_code=201,
    responses={409: {"model": ErrorPublic, "description": "the client id names another decision"}},
)
def record_decision(
    job_id: DbId, body: DecisionCreate, reviewer: CurrentReviewer, session: SessionDep, settings: SettingsDep
) -> DecisionPublic:
    """Record the caller's decision on a sample of the job: keep its label, relabel it (`label`),
    or remove it as ambiguous. Relabelled and removed samples become known mislabeled, kept ones
    known clean, for the metrics of the dataset's jobs (where the reviewers agree). With a
    `client_id`, a repeated request returns the decision stored the first time."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    decision = decisions.record_decision(
        session,
        reviewer,
        job,
        body.sample_index,
        body.verdict,
        body.label,
        job_artifacts(settings, job),
        client_id=body.client_id,
    )
    return DecisionPublic.model_validate(decision)


@router.get("/jobs/{job_id}/decisions/mine")
def my_decisions(
    job_id: DbId,
    reviewer: CurrentReviewer,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ReviewerDecisionPublic]:
    """The caller's decisions made in the job that are not undone, newest first: what undo works
    back through (the review page's undo history, across reloads)."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    return [
        ReviewerDecisionPublic(**DecisionPublic.model_validate(decision).model_dump(), sample_index=index)
        for decision, index in decisions.reviewer_decisions(session, reviewer, job, limit=limit)
    ]


@router.post(
    "/decisions/{decision_id}/undo",
    responses={
        403: {"model": ErrorPublic, "description": "another reviewer's decision"},
        409: {"model": ErrorPublic, "description": "undone already"},
    },
)
def undo_decision(decision_id: DbId, reviewer: CurrentReviewer, session: SessionDep) -> DecisionPublic:
    """Undo one of the caller's decisions; their previous decision on the sample counts again."""
    return DecisionPublic.model_validate(decisions.undo_decision(session, reviewer, decision_id))


@router.get("/jobs/{job_id}/decisions")
def list_decisions(
    job_id: DbId,
    reviewer: CurrentReviewer,
    session: SessionDep,
    settings: SettingsDep,
    conflicts_only: Annotated[bool, Query(description="only samples on which reviewers disagree")] = False,
    limit: Annotated[int, Query(ge=1, le=10_000, description="samples per page")] = 1_000,
    after: Annotated[
        int | None, Query(ge=-1, le=INT32_MAX, description="the `next_after` of the previous page")
    ] = None,
) -> JobDecisionsPublic:
    """The job's samples with decisions, by sample index, a page of at most `limit`: each
    reviewer's decision that counts, whether they conflict, and whether they agree with the job's
    known flags (injected, else uploaded). The summary counts them all."""
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    found = reviews.reviewed_samples(
        session, job, job_artifacts(settings, job), conflicts_only=conflicts_only, viewer=reviewer
    )
    listed = job_decisions_public(job.id, found)
    following = [sample for sample in listed.samples if after is None or sample.sample_index > after]
    listed.samples = following[:limit]
    listed.next_after = listed.samples[-1].sample_index if len(following) > limit else None
    return listed


class LabelStudioImages(StrEnum):
    """How a Label Studio task carries its image."""

    URL = "url"
    INLINE = "inline"


EXPORT_MEDIA_TYPES = {"csv": "text/csv", "json": "application/json", "labelstudio.json": "application/json"}


def _export(
    job_id: DbId, fmt: str, reviewer: Reviewer, session: Session, sessions: sessionmaker[Session], settings: Settings,
    decided_only: bool, image_of: Callable[[AuditJob], Callable[[int], str] | None] = lambda job: None,
) -> StreamingResponse:  # fmt: skip
    job = jobs.get_job(session, reviewer.owner_id, job_id)
    assignments.require_export_access(session, reviewer, job)
    chunks = reviews.export_samples(sessions, job, job_artifacts(settings, job), decided_only=decided_only)
    return StreamingResponse(
        _encoded(fmt, chunks, image_of(job)),
        media_type=EXPORT_MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="job-{job.id}-labels.{fmt}"'},
    )


def _encoded(
    fmt: str, chunks: Iterator[list[ExportedSample]], image_of: Callable[[int], str] | None = None
) -> Iterator[bytes]:
    if fmt == "labelstudio.json":
        return json_array_bytes(
            [sample.label_studio_task(None if image_of is None else image_of(sample.sample_index)) for sample in chunk]
            for chunk in chunks
        )
    rows = ([sample.row() for sample in chunk] for chunk in chunks)
    return csv_bytes(EXPORT_COLUMNS, rows) if fmt == "csv" else json_array_bytes(rows)


DecidedOnly = Annotated[bool, Query(description="only the samples with a decision")]


@router.get(
    "/jobs/{job_id}/export.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "streamed"}},
)
def export_csv(
    job_id: DbId,
    reviewer: CurrentReviewer,
    session: SessionDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    decided_only: DecidedOnly = False,
) -> StreamingResponse:
    """Every sample's corrected label (the one the reviewers agree on; empty if removed) with the
    decisions: columns sample_index, sample_id, given_label, label, verdict, removed,
    is_mislabeled, conflict, reviewers, decided_at, known_mislabeled."""
    return _export(job_id, "csv", reviewer, session, sessions, settings, decided_only)


@router.get(
    "/jobs/{job_id}/export.json",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/json": {}}, "description": "streamed"}},
)
def export_json(
    job_id: DbId,
    reviewer: CurrentReviewer,
    session: SessionDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    decided_only: DecidedOnly = False,
) -> StreamingResponse:
    """The rows of `export.csv` as a JSON array of objects."""
    return _export(job_id, "json", reviewer, session, sessions, settings, decided_only)


@router.get(
    "/jobs/{job_id}/export.labelstudio.json",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/json": {}}, "description": "streamed"}},
)
def export_label_studio(
    job_id: DbId,
    reviewer: CurrentReviewer,
    session: SessionDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    request: Request,
    decided_only: DecidedOnly = False,
    images: Annotated[
        LabelStudioImages,
        Query(description="url: each image's URL on this service (opened with the API key or a review-page "
              "login); inline: the PNG itself as a data: URL, which Label Studio shows without access here"),
    ] = LabelStudioImages.URL,
) -> StreamingResponse:  # fmt: skip
    """Label Studio tasks: the sample in `data` (an image's URL in `data.image`, the corrected
    label, the reviewers and when they decided), one annotation per reviewer's decision with a
    `verdict` choice and the resulting `label` choice, on an object named `sample`; the
    decisions with their reviewer and time in `meta.decisions`. The labeling config is in the
    README."""
    base = str(request.base_url).rstrip("/")

    def image_of(job: AuditJob) -> Callable[[int], str] | None:
        if job.dataset_version.modality != "image":
            return None
        if images is LabelStudioImages.INLINE:
            return lambda index: _data_url(sample_images.full_image_png(job, settings, index))
        return lambda index: f"{base}/jobs/{job.id}/samples/{index}/image.png"

    return _export(job_id, "labelstudio.json", reviewer, session, sessions, settings, decided_only, image_of)


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
