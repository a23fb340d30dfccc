"""Datasets and their versions: creating one (built in, uploaded, appended to), its versions and
how two of them differ, and the known mislabel flags of a version."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from api.schemas.common import Schema
from core.modality import Modality


class BuiltinDatasetCreate(Schema):
    model_config = ConfigDict(extra="forbid")

    builtin: str = Field(description="a built-in dataset: digits (bundled) or fashion-mnist (when installed)")
    name: str | None = Field(None, min_length=1, max_length=200, description="default: the built-in's name")


class DatasetUploadForm(Schema):
    """The text fields sent with an uploaded file."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=200, description="default: the file name without suffix")
    modality: Modality | None = Field(None, description="default: decided by the file (see core.loaders)")


class DatasetVersionPublic(Schema):
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
    status: Literal["ingesting", "ready"] = Field(
        "ready", description="ingesting: its file is still being read (no samples yet, no jobs); then ready"
    )
    created_at: datetime


class DatasetPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    created_at: datetime
    status: Literal["ingesting", "ready", "failed"] = Field(
        "ready", description="its latest upload's ingest: ingesting (see ingest_percent), ready or failed (see ingest_error)"
    )
    ingest_percent: int = Field(100, description="how far the ingest of its latest upload got, 0..100")
    ingest_error: str | None = Field(None, description="why its latest upload could not be ingested (nothing of it was stored)")
    versions: list[DatasetVersionPublic]


class FlagCreate(Schema):
    sample_id: str
    is_mislabeled: bool | None = Field(description="null: not known")


class FlagsPublic(Schema):
    dataset_id: int
    version: int
    updated: int
    num_known: int = Field(description="samples of the version with a known flag")
    num_mislabeled: int = Field(description="samples of the version known to be mislabeled")


class AppendPublic(Schema):
    """An append: its new version's counts; while a large file is still being ingested (202), the
    dataset is `ingesting` and the counts are null (they are the version's `change` once ready)."""

    dataset: DatasetPublic
    version: int = Field(description="the new version")
    num_added: int | None = Field(description="null while the file is being ingested")
    num_duplicates: int | None = Field(
        description="samples left out: their content is in the dataset already; null while ingesting"
    )
    duplicates: list[dict[str, str]] = Field(description="the first 100: sample_id and the duplicate_of it")
    new_classes: list[str]

    @classmethod
    def of(cls, dataset: DatasetPublic) -> AppendPublic:
        """The append that made the dataset's latest version (ingesting: no counts yet)."""
        latest = dataset.versions[-1]
        change = latest.change or {}
        return cls(
            dataset=dataset, version=latest.version, num_added=change.get("num_added"),
            num_duplicates=change.get("num_duplicates"), duplicates=change.get("duplicates", []),
            new_classes=change.get("new_classes", []),
        )  # fmt: skip


class RelabelPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    sample_id: str
    old_label: str
    new_label: str


class VersionDiffPublic(Schema):
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
