"""/datasets/{id}/versions: grow a dataset by appending samples, apply reviewers' relabels as a
new version, list the versions and compare two of them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from api.deps import BlobStoreDep, CurrentOwner, SessionDep, SettingsDep
from api.schemas import AppendPublic, DatasetPublic, DatasetVersionPublic, ErrorPublic, VersionDiffPublic
from api.schemas.common import DbId
from api.uploads import DatasetUpload, multipart_file_schema, receive_dataset_upload
from core.services import UnsupportedFileTypeError, datasets, versions

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


async def _upload(request: Request, _owner: CurrentOwner, store: BlobStoreDep) -> DatasetUpload:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedFileTypeError("send the samples to append as a multipart/form-data file")
    return await receive_dataset_upload(request, store)


@router.get("")
def list_versions(dataset_id: DbId, owner: CurrentOwner, session: SessionDep) -> list[DatasetVersionPublic]:
    """The dataset's versions, oldest first, each with how it was made from its parent."""
    dataset = datasets.get_dataset(session, owner.id, dataset_id)
    return [DatasetVersionPublic.model_validate(version) for version in dataset.versions]


@router.post(
    "/append",
    status_code=201,
    openapi_extra=APPEND_BODY,
    responses={413: {"model": ErrorPublic, "description": "the file is larger than the upload limit"}},
)
def append_samples(
    dataset_id: DbId,
    upload: Annotated[DatasetUpload, Depends(_upload)],
    owner: CurrentOwner,
    session: SessionDep,
    store: BlobStoreDep,
    settings: SettingsDep,
) -> AppendPublic:
    """Add the samples of a file (any dataset format, the dataset's kind of data) as a new version.
    Samples whose content is in the dataset already are reported as duplicates and left out; a
    new sample id must not be taken by a sample with other content."""
    dataset, duplicates = versions.append_samples(session, store, settings, owner.id, dataset_id, upload.blob)
    latest = dataset.versions[-1]
    return AppendPublic(
        dataset=DatasetPublic.model_validate(dataset),
        version=latest.version,
        num_added=latest.change["num_added"],
        num_duplicates=len(duplicates),
        duplicates=latest.change["duplicates"],
        new_classes=latest.change["new_classes"],
    )


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
