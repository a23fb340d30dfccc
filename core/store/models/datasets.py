"""Owners and what they own: API keys and datasets, each dataset's versions and their samples."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.store.models.base import Base, JSONDocument, created_at_column


class Owner(Base):
    __tablename__ = "owners"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = created_at_column()

    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="owner", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )
    datasets: Mapped[list[Dataset]] = relationship(
        back_populates="owner", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class ApiKey(Base):
    """An API key of an owner. Only `key_hash` (hex sha256 of the key) is stored, never the key;
    `prefix` is its first characters, kept to tell keys apart in listings. `reviewer` names the
    person using the key, so that two reviewers of one owner are told apart (default: the owner).
    `role` is what the key may do: 'owner' everything of the owner's, 'reviewer' only reviewing
    (see `api.deps`). A key past `expires_at`, or revoked, authenticates nothing."""

    __tablename__ = "api_keys"
    __table_args__ = (CheckConstraint("role IN ('owner', 'reviewer')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reviewer: Mapped[str | None] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16), default="owner", server_default="owner")
    created_at: Mapped[datetime] = created_at_column()
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    owner: Mapped[Owner] = relationship(back_populates="api_keys", lazy="raise")


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at_column()
    # Its latest upload's ingest (`core.services.ingest`): 'ingesting', 'ready' or 'failed', how
    # far it got (0..100) and, when it failed, why.
    status: Mapped[str] = mapped_column(String(16), default="ready", server_default="ready")
    ingest_percent: Mapped[int] = mapped_column(default=100, server_default="100")
    ingest_error: Mapped[str | None] = mapped_column(Text)

    owner: Mapped[Owner] = relationship(back_populates="datasets", lazy="raise")
    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="DatasetVersion.version",
    )


class DatasetVersion(Base):
    """One version of a dataset: the stored blob (content-addressed by `blob_sha256`, kept at
    `blob_uri`, a path under the data dir or an object store URL) and what was read from it.
    Versions are immutable; appending samples or applying relabels writes a new one."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    version: Mapped[int]
    blob_sha256: Mapped[str] = mapped_column(String(64))
    blob_uri: Mapped[str] = mapped_column(String(2048))
    format: Mapped[str] = mapped_column(String(32))
    modality: Mapped[str] = mapped_column(String(16))
    num_samples: Mapped[int]
    num_classes: Mapped[int]
    class_names: Mapped[list[str]] = mapped_column(JSONDocument)
    # The version this one was made from (append, relabel) and what changed (the `change`
    # dicts of `core.services.versions`). NULL for an upload of a whole dataset.
    parent_version: Mapped[int | None]
    change: Mapped[dict[str, Any] | None]
    # 'ingesting' while its file is read by the ingest task (no sample rows yet), then 'ready'.
    status: Mapped[str] = mapped_column(String(16), default="ready", server_default="ready")
    # Its decoded samples as one .npy shard under the data dir (`core.sample_store`), which the
    # worker streams; NULL for versions that are read from their blob or from segments.
    samples_uri: Mapped[str | None] = mapped_column(String(2048))
    # Its decoded samples as rows of several shards, in order: [{"shard": uri, "start": a,
    # "stop": b}, ...] (`core.sample_store.Segment`), as appends and relabels with removals make
    # them, sharing their parent's shards; NULL when `samples_uri` (or the blob) holds them all.
    sample_segments: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = created_at_column()

    dataset: Mapped[Dataset] = relationship(back_populates="versions", lazy="raise")
    samples: Mapped[list[Sample]] = relationship(
        back_populates="dataset_version", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class Sample(Base):
    """A sample of a dataset version: its position (`sample_index`, 0..N-1), its stable id (the
    same sample keeps its id across versions), its given label (an index into `class_names`) and
    the sha256 of its content as loaded (`core.dataset.content_hashes`), which finds
    exact duplicates among appended samples and re-uploaded samples that moved. `source_path` is
    the sample's file in its version's upload when that is not its id: an image moved to another
    class folder keeps the id it was first uploaded under (`core.services.sample_identity`)."""

    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("dataset_version_id", "sample_id"),)

    dataset_version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), primary_key=True
    )
    sample_index: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[str] = mapped_column(String(255))
    label: Mapped[int]
    is_mislabeled: Mapped[bool | None] = mapped_column(Boolean)
    content_hash: Mapped[str | None] = mapped_column(String(64))
    source_path: Mapped[str | None] = mapped_column(String(255))

    dataset_version: Mapped[DatasetVersion] = relationship(back_populates="samples", lazy="raise")
