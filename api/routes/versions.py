"""/datasets/{id}/versions: grow a dataset by appending samples, apply reviewers' relabels as a
new version, list the versions, compare two of them and download one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import BlobStoreDep, CurrentOwner, SessionDep, SessionFactoryDep, SettingsDep
from api.schemas import AppendPublic, DatasetPublic, DatasetVersionPublic, ErrorPublic, VersionDiffPublic
from api.schemas.common import DbId
from api.uploads import (
    DatasetUpload,
    ingested_inline,
    multipart_file_schema,
    queue_ingest,
    receive_dataset_upload,
    release_upload,
)
from core.services import UnsupportedFileTypeError, datasets, version_downloads, versions
from core.services.version_downloads import DownloadFormat

router = APIRouter(
    prefix="/datasets/{dataset_id}/versions",
    tags=["datasets"],
    responses={
        401: {"model": ErrorPublic, "description": "missing or invalid API key"},
        404: {"model": ErrorPublic, "description": "no such dataset or version of the caller's"},
        409: {"model": ErrorPublic, "description": "nothing new to make a version of"},
        422: {"model": ErrorPublic, "description": "invalid request or unreadable dataset"},
    },
)

APPEND_BODY = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": multipart_file_schema()}}}
}


async def _upload(
    request: Request, _owner: CurrentOwner, store: BlobStoreDep, sessions: SessionFactoryDep
) -> AsyncIterator[DatasetUpload]:
    """The uploaded file, removed after the request unless the new version refers to it."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedFileTypeError("send the samples to append as a multipart/form-data file")
    upload = await receive_dataset_upload(request, store)
    try:
        yield upload
    finally:
        await release_upload(store, sessions, upload)


@router.get("")
def list_versions(dataset_id: DbId, owner: CurrentOwner, session: SessionDep) -> list[DatasetVersionPublic]:
    """The dataset's versions, oldest first, each with how it was made from its parent."""
    dataset = datasets.get_dataset(session, owner.id, dataset_id)
    return [DatasetVersionPublic.model_validate(version) for version in dataset.versions]


@router.post(
    "/append",
    status_code=201,
    openapi_extra=APPEND_BODY,
    responses={
        202: {"model": AppendPublic, "description": "a large file: its version is being ingested (poll the dataset)"},
        413: {"model": ErrorPublic, "description": "the file is larger than the upload limit"},
        503: {"model": ErrorPublic, "description": "a large file could not be queued for ingest"},
    },
)
def append_samples(
    dataset_id: DbId,
    upload: Annotated[DatasetUpload, Depends(_upload)],
    owner: CurrentOwner,
    session: SessionDep,
    store: BlobStoreDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> AppendPublic:
    """Add the samples of a file (any dataset format, the dataset's kind of data) as a new version.
    Samples whose content is in the dataset already are reported as duplicates and left out; a
    new sample id must not be taken by a sample with other content. The new version refers to the
    existing samples and stores only the added ones.

    A file up to the inline limit (LILAW_INLINE_INGEST_MAX_BYTES) is appended inside the request:
    201 with the new version ready. A larger one is read by the ingest worker: 202 with the
    dataset `ingesting` (and null counts); poll `GET /datasets/{id}` until its status is `ready`
    (the counts are then the new version's `change`) or `failed` (with `ingest_error`; nothing is
    kept, the previous version stays the latest)."""
    if ingested_inline(upload, settings):
        dataset, _ = versions.append_samples(session, store, settings, owner.id, dataset_id, upload.blob)
    else:
        dataset = versions.start_append(session, owner.id, dataset_id, upload.blob)
        queue_ingest(request, session, settings, dataset.versions[-1].id)
        response.status_code = 202
        dataset = datasets.get_dataset(session, owner.id, dataset_id)
    return AppendPublic.of(DatasetPublic.model_validate(dataset))


@router.post("/relabel", status_code=201)
def apply_relabels(
    dataset_id: DbId, owner: CurrentOwner, session: SessionDep, store: BlobStoreDep, settings: SettingsDep
) -> DatasetVersionPublic:
    """A new version with the reviewers' agreed relabels and removals applied to the latest one."""
    dataset = versions.apply_relabels(session, store, settings, owner.id, dataset_id)
    return DatasetVersionPublic.model_validate(dataset.versions[-1])


@router.get("/diff")
def diff_versions(
    dataset_id: DbId,
    owner: CurrentOwner,
    session: SessionDep,
    base: Annotated[DbId, Query(description="the version to compare from")],
    version: Annotated[DbId | None, Query(description="default: the latest")] = None,
) -> VersionDiffPublic:
    """Samples added, removed and relabeled (by sample id) from `base` to `version`."""
    version = version or datasets.get_version(session, owner.id, dataset_id).version
    return VersionDiffPublic.model_validate(versions.diff_versions(session, owner.id, dataset_id, base, version))


@router.get(
    "/{version}/download",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/zip": {}, "text/csv": {}, "application/octet-stream": {}},
            "description": "the version's file, streamed",
        }
    },
)
def download_version(
    dataset_id: DbId,
    version: DbId,
    owner: CurrentOwner,
    session: SessionDep,
    settings: SettingsDep,
    format: Annotated[
        DownloadFormat, Query(description="original: as the dataset was uploaded; or npz, or csv for tables")
    ] = DownloadFormat.ORIGINAL,
) -> StreamingResponse:
    """The version as a file that uploads again with the same sample ids: by default in the format
    the dataset was uploaded in, with the version's labels (a class-folder zip with each image in
    its class's folder, a zip with labels.csv, a CSV/TSV with a label column; an .npz for an .npz
    or a built-in). Download the version `relabel` made to get the corrected dataset."""
    found = version_downloads.download_version(session, settings, owner.id, dataset_id, version, format)
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", found.filename)
    return StreamingResponse(
        found.chunks,
        media_type=found.media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
