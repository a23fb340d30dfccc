"""Ingesting an uploaded dataset file: reading it (`core.loaders`), checking its sample ids, taking
every sample's content hash and storing the version with one `Sample` row per sample.

Uploads up to `settings.inline_ingest_max_bytes` are ingested inside their request
(`ingest_inline`). A larger one becomes a version with status 'ingesting' (`start_ingest`: no
sample rows yet; its row refers to the blob, so neither the request's cleanup nor the orphan
sweep removes it) that the ingest task completes (`run_ingest`): the file work runs outside any
transaction while the dataset's `ingest_percent` is updated in short ones, then one transaction
stores the sample rows and makes the version 'ready'. A file that cannot be read leaves nothing
behind: the version row is deleted, the blob removed unless another version refers to it, and the
dataset shows status 'failed' with the error, which names the uploaded file.

A large append (`core.services.versions.start_append`) is an ingesting version too, with a parent:
the task reads the file into a shard of only the added rows (`versions.read_appended`) and stores
the version as its parent's segments plus that shard (`versions.store_append`); a file that
cannot be appended (unreadable, of another shape, a taken id, nothing new) fails the same way,
and leaves the parent the dataset's latest version, ready.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload, sessionmaker

from core.dataset import AuditDataset, Modality
from core.errors import AuditError
from core.loaders import load_dataset
from core.sample_store import flags_path, shard_sink, write_shard
from core.services.blobs import Blob, BlobStore, shown_as
from core.services import datasets, versions
from core.services.version_samples import hashes_of, new_shard_path, remove_shard, shard_uri
from core.services.sample_identity import carried_identities
from core.settings import Settings
from core.store import session_scope
from core.store.models import Dataset, DatasetVersion

INGESTING, READY, FAILED = "ingesting", "ready", "failed"
PENDING_FORMAT = "pending"
# The percent: reading the file up to READ_PERCENT, hashing up to HASH_PERCENT, then storing.
READ_PERCENT, HASH_PERCENT = 80, 95
PROGRESS_INTERVAL_S = 0.5

logger = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ReadUpload:
    """An uploaded file read as a dataset (its samples in a shard when `shard` is set), with its
    samples' content hashes."""

    dataset: AuditDataset
    hashes: list[str]
    shard: Path | None = None

    def samples_uri(self, settings: Settings) -> str | None:
        return None if self.shard is None else shard_uri(settings, self.shard)

    def discard(self) -> None:
        """Remove the shard (its version was not stored)."""
        if self.shard is not None:
            remove_shard(self.shard)


def read_upload(
    path: Path, shown_name: str, *, modality: Modality | None, max_pixels: int, shard: Path | None = None,
    on_percent: Progress | None = None,
) -> ReadUpload:
    """Read, check and hash the file at `path`; errors name it as `shown_name`. With `shard`,
    the decoded samples are written there as they are decoded (never all in memory, for images)
    and the dataset's `x` is that shard, memory-mapped; without, they stay in memory."""
    report = on_percent or (lambda _percent: None)
    try:
        with shown_as(path, shown_name):
            loaded = load_dataset(
                path, modality=modality, max_pixels=max_pixels, sink=None if shard is None else shard_sink(shard),
                on_progress=lambda fraction: report(int(fraction * READ_PERCENT)),
            )  # fmt: skip
            datasets.check_sample_ids(loaded)
        if shard is not None and loaded.test is not None:  # the worker reads a test split from the blob
            remove_shard(shard)
            shard = None
        if shard is not None:
            if not isinstance(loaded.x, np.memmap):  # tables, arrays: parsed in memory within their budgets
                loaded.x = write_shard(shard, loaded.x)
            if loaded.is_mislabeled is not None:
                np.save(flags_path(shard), loaded.is_mislabeled)
        report(READ_PERCENT)
        hashes = hashes_of(
            loaded.x, on_chunk=lambda done: report(READ_PERCENT + (HASH_PERCENT - READ_PERCENT) * done // len(loaded))
        )
    except BaseException:
        if shard is not None:
            remove_shard(shard)
        raise
    return ReadUpload(loaded, hashes, shard)


def store_read(
    session: Session, settings: Settings, owner_id: int, name: str, read: ReadUpload, blob_sha256: str, blob_uri: str,
    source: str, *, into: DatasetVersion | None = None,
) -> Dataset:
    """The read file as the next version of the owner's dataset `name` (or as `into`, the
    ingesting version it completes), its sample ids carried over by content where they moved."""
    loaded = read.dataset
    identities = carried_identities(session, owner_id, name, loaded.sample_ids, read.hashes)
    loaded.sample_ids = identities.sample_ids
    return datasets.add_version(
        session, owner_id, name, loaded, blob_sha256=blob_sha256, blob_uri=blob_uri, hashes=read.hashes,
        source_paths=identities.source_paths, change=identities.change(source), into=into,
        samples_uri=read.samples_uri(settings),
    )  # fmt: skip


def ingest_inline(
    session: Session, store: BlobStore, settings: Settings, owner_id: int, name: str, blob: Blob, *,
    modality: Modality | None,
) -> Dataset:
    """Ingest a small upload in the caller's transaction. When the file cannot be read, the blob
    is removed (if this upload created it) and the `DatasetError` raised. (A shard whose
    transaction is rolled back afterwards is left to `BlobStore.sweep_orphans`.)"""
    try:
        read = read_upload(
            blob.path, blob.shown_name, modality=modality, max_pixels=settings.max_decoded_pixels,
            shard=new_shard_path(settings),
        )  # fmt: skip
    except AuditError:
        store.discard_if_unused(session, blob)
        raise
    try:
        return store_read(session, settings, owner_id, name, read, blob.sha256, blob.uri, blob.shown_name)
    except BaseException:
        read.discard()
        raise


def start_ingest(session: Session, owner_id: int, name: str, blob: Blob, *, modality: Modality | None) -> Dataset:
    """The next version of the owner's dataset `name` (created when new), 'ingesting' the blob:
    the caller commits, then queues `run_ingest` on the version (the dataset's latest)."""
    dataset = datasets.lock_dataset_by_name(session, owner_id, name)
    latest = session.scalar(
        select(DatasetVersion.version).where(DatasetVersion.dataset_id == dataset.id).order_by(DatasetVersion.version.desc()).limit(1)
    )
    session.add(
        DatasetVersion(
            dataset_id=dataset.id, version=(latest or 0) + 1, blob_sha256=blob.sha256, blob_uri=blob.uri,
            format=PENDING_FORMAT, modality=modality or "", num_samples=0, num_classes=0, class_names=[],
            change={"kind": "upload", "source": blob.shown_name}, status=INGESTING,
        )
    )  # fmt: skip
    dataset.status, dataset.ingest_percent, dataset.ingest_error = INGESTING, 0, None
    session.flush()
    return datasets.get_dataset(session, owner_id, dataset.id)


def ingesting_version_id(dataset: Dataset) -> int:
    """The id of the dataset's version that `start_ingest` just made."""
    return dataset.versions[-1].id


def run_ingest(sessions: sessionmaker[Session], version_id: int, settings: Settings) -> str | None:
    """Complete an ingesting version: its status once done ('ready' or 'failed'); None when there
    is no such version (a failed ingest's, already removed). Expected failures (`AuditError`)
    are recorded on the dataset; any other exception is recorded as a generic message and re-raised."""
    with session_scope(sessions) as session:
        version = session.get(DatasetVersion, version_id, options=[joinedload(DatasetVersion.dataset)])
        if version is None or version.status != INGESTING:
            return None if version is None else version.status
        dataset_id, owner_id, name = version.dataset_id, version.dataset.owner_id, version.dataset.name
        sha256, uri = version.blob_sha256, version.blob_uri
        source = (version.change or {}).get("source") or "the uploaded file"
        modality = version.modality or None
        parent_version = version.parent_version
    blob = Blob(sha256=sha256, path=settings.data_dir / uri, uri=uri, is_new=True, filename=source)
    progress = _PercentWriter(sessions, dataset_id)
    if parent_version is not None:
        return _run_append(sessions, settings, version_id, owner_id, dataset_id, parent_version, blob, progress)
    try:
        read = read_upload(
            blob.path, source, modality=modality, max_pixels=settings.max_decoded_pixels,
            shard=new_shard_path(settings), on_percent=progress,
        )  # fmt: skip
        try:
            with session_scope(sessions) as session:
                into = session.get(DatasetVersion, version_id)
                if into is None or into.status != INGESTING:
                    read.discard()
                    return None if into is None else into.status
                store_read(session, settings, owner_id, name, read, sha256, uri, source, into=into)
        except BaseException:
            read.discard()
            raise
        return READY
    except AuditError as error:
        _fail(sessions, settings, version_id, blob, error.message)
        return FAILED
    except Exception as error:
        logger.exception("ingest of dataset version %s failed", version_id)
        _fail(sessions, settings, version_id, blob, f"the ingest failed unexpectedly ({type(error).__name__})")
        raise


def _run_append(
    sessions: sessionmaker[Session], settings: Settings, version_id: int, owner_id: int, dataset_id: int,
    parent_version: int, blob: Blob, progress: _PercentWriter,
) -> str | None:
    """Complete an ingesting append: the file read against its parent outside any transaction,
    then one transaction that stores the version; the uploaded file is removed afterwards (the
    version's blob is its segments' manifest)."""
    store = BlobStore(settings)
    parent = appended = None
    try:
        with session_scope(sessions) as session:
            base = datasets.get_version(session, owner_id, dataset_id, parent_version)
            stored = versions.stored_samples(session, base)
        parent = versions.parent_samples(settings, base, stored)
        appended = versions.read_appended(settings, parent, blob.path, blob.shown_name, on_percent=progress)
        with session_scope(sessions) as session:
            into = session.get(DatasetVersion, version_id)
            if into is None or into.status != INGESTING:
                appended.discard()
                parent.growth.discard()
                return None if into is None else into.status
            base = datasets.get_version(session, owner_id, dataset_id, parent_version)
            versions.store_append(session, store, settings, owner_id, base, parent, appended, into=into)
    except BaseException as error:
        for made in (appended, parent.growth if parent is not None else None):
            if made is not None:
                made.discard()
        if isinstance(error, AuditError):
            _fail(sessions, settings, version_id, blob, error.message)
            return FAILED
        if isinstance(error, Exception):
            logger.exception("append of dataset version %s failed", version_id)
            _fail(sessions, settings, version_id, blob, f"the append failed unexpectedly ({type(error).__name__})")
        raise
    store.discard_unreferenced(sessions, blob)
    return READY


def fail_ingest(sessions: sessionmaker[Session], settings: Settings, version_id: int, message: str) -> None:
    """Record an ingest that could not run (its task was lost, the broker refused it)."""
    with session_scope(sessions) as session:
        version = session.get(DatasetVersion, version_id)
        if version is None or version.status != INGESTING:
            return
        blob = Blob(
            sha256=version.blob_sha256, path=settings.data_dir / version.blob_uri, uri=version.blob_uri, is_new=True
        )
    _fail(sessions, settings, version_id, blob, message)


def _fail(sessions: sessionmaker[Session], settings: Settings, version_id: int, blob: Blob, message: str) -> None:
    """Remove the ingesting version (it has no sample rows) and, unless another version refers to
    it, its blob; the dataset shows the failure."""
    with session_scope(sessions) as session:
        version = session.get(DatasetVersion, version_id)
        if version is None or version.status != INGESTING:
            return
        dataset_id = version.dataset_id
        session.delete(version)
        session.flush()
        session.execute(
            update(Dataset)
            .where(Dataset.id == dataset_id)
            .values(status=FAILED, ingest_error=message[:4000], ingest_percent=0)
        )
    BlobStore(settings).discard_unreferenced(sessions, blob)


class _PercentWriter:
    """The dataset's ingest percent, written in its own short transaction at most every
    PROGRESS_INTERVAL_S and only when it grew."""

    def __init__(self, sessions: sessionmaker[Session], dataset_id: int):
        self.sessions = sessions
        self.dataset_id = dataset_id
        self.percent = 0
        self._last = 0.0

    def __call__(self, percent: int) -> None:
        now = time.monotonic()
        if percent <= self.percent or now - self._last < PROGRESS_INTERVAL_S:
            return
        self.percent, self._last = percent, now
        with session_scope(self.sessions) as session:
            session.execute(
                update(Dataset)
                .where(Dataset.id == self.dataset_id, Dataset.status == INGESTING)
                .values(ingest_percent=min(percent, 99))
            )
