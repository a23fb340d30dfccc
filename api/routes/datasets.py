"""/datasets: upload a dataset file or pick a built-in, list and read datasets with their
versions, and upload known flags for a version."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import TypeAdapter, ValidationError

from api.deps import BlobStoreDep, CurrentOwner, SessionDep, SessionFactoryDep, SettingsDep
from api.errors import validation_message
from api.schemas import BuiltinDatasetCreate, DatasetPublic, ErrorPublic, FlagCreate, FlagsPublic
from api.schemas.common import DbId
from api.uploads import (
    DatasetUpload,
    ingested_inline,
    multipart_file_schema,
    queue_ingest,
    receive_dataset_upload,
    release_upload,
)
from core.errors import DatasetError
from core.services import UnsupportedFileTypeError, UploadTooLargeError, datasets, ingest

MAX_FLAGS_BYTES = 64 * 1024**2

router = APIRouter(
    prefix="/datasets",
    tags=["datasets"],
    responses={
        401: {"model": ErrorPublic, "description": "missing or invalid API key"},
        404: {"model": ErrorPublic, "description": "no such dataset or version of the caller's"},
        422: {"model": ErrorPublic, "description": "invalid request or unreadable dataset"},
    },
)

CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": multipart_file_schema(
                    name={"type": "string", "description": "default: the file name without suffix"},
                    modality={"type": "string", "enum": ["image", "tabular", "timeseries"]},
                )
            },
            "application/json": {"schema": BuiltinDatasetCreate.model_json_schema()},
        },
    }
}
FLAGS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "text/csv": {"schema": {"type": "string", "description": "header sample_id,is_mislabeled"}},
            "application/json": {"schema": {"type": "array", "items": FlagCreate.model_json_schema()}},
        },
    }
}
_flag_list = TypeAdapter(list[FlagCreate])


async def _dataset_source(
    request: Request, _owner: CurrentOwner, store: BlobStoreDep, sessions: SessionFactoryDep
) -> AsyncIterator[DatasetUpload | BuiltinDatasetCreate]:
    """The uploaded file (multipart/form-data; removed after the request unless the new version
    refers to it) or the built-in asked for (JSON); the owner is authenticated first, so that
    nothing is stored for an unknown caller."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        upload = await receive_dataset_upload(request, store)
        try:
            yield upload
        finally:
            await release_upload(store, sessions, upload)
        return
    if content_type.startswith("application/json"):
        try:
            builtin = BuiltinDatasetCreate.model_validate_json(await request.body())
        except ValidationError as error:
            raise DatasetError(validation_message(error.errors())) from None
        yield builtin
        return
    raise UnsupportedFileTypeError(
        'send a dataset file as multipart/form-data, or a built-in as JSON {"builtin": "digits"}'
    )


@router.post(
    "",
    status_code=201,
    openapi_extra=CREATE_BODY,
    responses={
        202: {"model": DatasetPublic, "description": "a large file: its version is being ingested (poll the dataset)"},
        409: {"model": ErrorPublic, "description": "another upload of the dataset is still being ingested"},
        413: {"model": ErrorPublic, "description": "the file is larger than the upload limit"},
        415: {"model": ErrorPublic, "description": "not a supported dataset file"},
        503: {"model": ErrorPublic, "description": "a large file could not be queued for ingest"},
    },
)
def create_dataset(
    source: Annotated[DatasetUpload | BuiltinDatasetCreate, Depends(_dataset_source)],
    owner: CurrentOwner,
    session: SessionDep,
    store: BlobStoreDep,
    settings: SettingsDep,
    request: Request,
    response: Response,
) -> DatasetPublic:
    """Upload a dataset file (.zip of class folders or of images with labels.csv, .npz, .csv,
    .tsv, .parquet) or add a built-in dataset. A name already used adds a new version.

    A file up to the inline limit (LILAW_INLINE_INGEST_MAX_BYTES) is read inside the request:
    201 with the new version ready. A larger one is read by the ingest worker: 202 with the
    dataset `ingesting`; poll `GET /datasets/{id}` until its status is `ready` (or `failed`, with
    `ingest_error`; nothing of the file is kept then)."""
    if isinstance(source, BuiltinDatasetCreate):
        dataset = datasets.create_builtin(session, owner.id, source.name or source.builtin, source.builtin)
    elif ingested_inline(source, settings):
        dataset = ingest.ingest_inline(
            session, store, settings, owner.id, source.name, source.blob, modality=source.modality
        )
    else:
        dataset = ingest.start_ingest(session, owner.id, source.name, source.blob, modality=source.modality)
        queue_ingest(request, session, settings, ingest.ingesting_version_id(dataset))
        response.status_code = 202
        dataset = datasets.get_dataset(session, owner.id, dataset.id)
    return DatasetPublic.model_validate(dataset)


@router.get("")
def list_datasets(owner: CurrentOwner, session: SessionDep) -> list[DatasetPublic]:
    return [DatasetPublic.model_validate(dataset) for dataset in datasets.list_datasets(session, owner.id)]


@router.get("/{dataset_id}")
def get_dataset(dataset_id: DbId, owner: CurrentOwner, session: SessionDep) -> DatasetPublic:
    return DatasetPublic.model_validate(datasets.get_dataset(session, owner.id, dataset_id))


async def _flags(request: Request, _owner: CurrentOwner) -> dict[str, bool | None]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FLAGS_BYTES:
        raise UploadTooLargeError(f"flags are limited to {MAX_FLAGS_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FLAGS_BYTES:
            raise UploadTooLargeError(f"flags are limited to {MAX_FLAGS_BYTES} bytes")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        try:
            flags = _flag_list.validate_json(bytes(body))
        except ValidationError as error:
            raise DatasetError(validation_message(error.errors())) from None
        return datasets.collect_flags((flag.sample_id, flag.is_mislabeled) for flag in flags)
    if content_type.startswith("text/csv"):
        return datasets.parse_flags_csv(bytes(body))
    raise UnsupportedFileTypeError("send flags as text/csv (sample_id,is_mislabeled) or as a JSON list")


@router.post(
    "/{dataset_id}/versions/{version}/flags",
    openapi_extra=FLAGS_BODY,
    responses={415: {"model": ErrorPublic, "description": "neither CSV nor JSON"}},
)
def upload_flags(
    dataset_id: DbId,
    version: DbId,
    flags: Annotated[dict[str, bool | None], Depends(_flags)],
    owner: CurrentOwner,
    session: SessionDep,
) -> FlagsPublic:
    """Set which samples of a dataset version are known to be mislabeled (null = not known).
    Every sample id must belong to the version; then metrics can be recomputed."""
    dataset_version = datasets.get_version(session, owner.id, dataset_id, version)
    updated = datasets.set_flags(session, dataset_version, flags)
    num_known, num_mislabeled = datasets.flag_counts(session, dataset_version)
    return FlagsPublic(
        dataset_id=dataset_id, version=version, updated=updated, num_known=num_known, num_mislabeled=num_mislabeled
    )
