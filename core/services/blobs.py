"""The content-addressed blob store: uploaded dataset files under `settings.blob_dir`, each named
by the sha256 of its bytes plus its original suffix, so that `core.loaders` dispatches on it.

An upload is written to `incoming/` while its hash and size are taken, then moved into place;
the same bytes uploaded again reuse the stored file. A dataset version's `blob_uri` is its blob's
path relative to the data dir, or ``builtin:NAME`` for a built-in dataset.

A blob's path and name are internal: an error a user reads names the file they uploaded
(`Blob.filename`) or a stored version's file, never `<sha256>.zip` (`shown_as`).

No file outlives its use: a request that received an upload removes the blob afterwards unless a
dataset version refers to it (`discard_unreferenced`, whatever the request's outcome), and
`sweep_orphans` (run periodically by beat, or `lilaw-audit sweep-blobs`) removes what a killed
process left: blobs no version refers to, partial uploads in `incoming/` and sample shards
(`settings.sample_dir`, `core.sample_store`) no version refers to (by `samples_uri` or in its
`sample_segments`), each only once older than a grace period, so that an upload still in flight
is left alone.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import AuditError
from core.services import UnsupportedFileTypeError, UploadTooLargeError
from core.settings import Settings
from core.store.models import DatasetVersion

# Longest first: a time series table keeps its `.ts` marker.
SUFFIXES = (".ts.csv", ".ts.tsv", ".ts.parquet", ".ts.pq", ".zip", ".npz", ".csv", ".tsv", ".parquet", ".pq")
BUILTIN_PREFIX = "builtin:"
_SHA256 = re.compile(r"[0-9a-f]{64}")
# Old enough that no upload is still streaming into the file or waiting for its transaction.
ORPHAN_GRACE = timedelta(hours=1)

logger = logging.getLogger(__name__)


def blob_suffix(filename: str) -> str:
    """The suffix a blob keeps from the uploaded file's name; other file types are refused."""
    lower = filename.lower()
    for suffix in SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    raise UnsupportedFileTypeError(
        f"{filename!r} is not a supported dataset file: upload a .zip (class folders, or images "
        "with labels.csv), .npz, .csv, .tsv or .parquet file"
    )


def dataset_source(version: DatasetVersion, settings: Settings) -> str:
    """What `core.loaders.load_dataset` reads for `version`: a built-in name or the blob's path."""
    if version.blob_uri.startswith(BUILTIN_PREFIX):
        return version.blob_uri.removeprefix(BUILTIN_PREFIX)
    return str(settings.data_dir / version.blob_uri)


@contextmanager
def shown_as(path: str | Path, shown: str) -> Iterator[None]:
    """Domain errors raised inside name the file at `path` as `shown`: its path, its file name
    and a blob's sha256 (its name less the suffix, which a loader takes for the dataset's name)
    are replaced in their message."""
    try:
        yield
    except AuditError as error:
        path = Path(path)
        sha256 = path.name.split(".", 1)[0]
        message = error.message
        for internal in (str(path), path.name, sha256 if _SHA256.fullmatch(sha256) else ""):
            if internal:
                message = message.replace(internal, shown)
        error.message, error.args = message, (message,)
        raise


@contextmanager
def version_file_errors(version: DatasetVersion, settings: Settings) -> Iterator[None]:
    """Errors raised inside, while reading `version`'s blob, name it as that version's file."""
    if version.blob_uri.startswith(BUILTIN_PREFIX):
        yield
        return
    with shown_as(dataset_source(version, settings), f"the file of dataset version {version.version}"):
        yield


@dataclass(frozen=True)
class Blob:
    sha256: str
    path: Path
    uri: str
    is_new: bool  # this upload created the file
    filename: str | None = None  # the uploaded file's own name, what its errors show

    @property
    def shown_name(self) -> str:
        return self.filename or "the uploaded file"


class BlobWriter:
    """The bytes of one upload on their way into the store."""

    def __init__(self, store: BlobStore, suffix: str, max_bytes: float, filename: str | None = None):
        self._store = store
        self._filename = filename
        self._suffix = suffix
        self._max_bytes = max_bytes
        self._hash = hashlib.sha256()
        self._file = tempfile.NamedTemporaryFile(dir=store.incoming_dir, prefix="upload-", delete=False)
        self.size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._max_bytes:
            raise UploadTooLargeError(f"the upload is larger than the limit of {self._max_bytes} bytes")
        self._hash.update(data)
        self._file.write(data)

    def finish(self) -> Blob:
        """Move the received file into place (or drop it when the store already holds the bytes)."""
        self._file.close()
        sha256 = self._hash.hexdigest()
        path = self._store.root / f"{sha256}{self._suffix}"
        is_new = not path.exists()
        if is_new:
            os.replace(self._file.name, path)
        else:
            os.unlink(self._file.name)
        uri = path.relative_to(self._store.data_dir).as_posix()
        return Blob(sha256=sha256, path=path, uri=uri, is_new=is_new, filename=self._filename)

    def discard(self) -> None:
        self._file.close()
        Path(self._file.name).unlink(missing_ok=True)


class BlobStore:
    def __init__(self, settings: Settings):
        self.data_dir = settings.data_dir
        self.root = settings.blob_dir
        self.incoming_dir = self.root / "incoming"
        self.max_bytes = settings.max_upload_bytes
        self.sample_dir = settings.sample_dir

    def writer(self, filename: str) -> BlobWriter:
        """A writer for an upload named `filename`; raises if its file type is not supported."""
        suffix = blob_suffix(filename)
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        return BlobWriter(self, suffix, self.max_bytes, filename)

    def save_arrays(self, arrays: dict[str, np.ndarray]) -> Blob:
        """Store arrays as an .npz blob (a dataset version the service made itself, so not
        subject to the upload limit)."""
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        writer = BlobWriter(self, ".npz", math.inf)
        try:
            writer.write(buffer.getbuffer())
        except BaseException:
            writer.discard()
            raise
        return writer.finish()

    def discard_if_unused(self, session: Session, blob: Blob) -> None:
        """Delete a blob this upload created, unless a dataset version refers to it."""
        if blob.is_new and not _referenced(session, blob.sha256):
            blob.path.unlink(missing_ok=True)

    def discard_unreferenced(self, sessions: sessionmaker[Session], blob: Blob) -> None:
        """After a request that received `blob` has ended (its transaction committed or rolled
        back): delete the file if this upload created it and no dataset version refers to it."""
        if not blob.is_new:
            return
        with sessions() as session:
            if _referenced(session, blob.sha256):
                return
        blob.path.unlink(missing_ok=True)

    def sweep_orphans(self, session: Session, grace: timedelta = ORPHAN_GRACE) -> SweepReport:
        """Delete blobs no dataset version refers to and partial uploads left in `incoming/`,
        each only when its file is older than `grace`."""
        report = SweepReport()
        cutoff = time.time() - grace.total_seconds()
        referenced = set(session.scalars(select(DatasetVersion.blob_sha256).distinct()))
        for path in self.root.glob("*") if self.root.is_dir() else ():
            sha256 = path.name.split(".", 1)[0]
            if not path.is_file() or not _SHA256.fullmatch(sha256) or sha256 in referenced:
                continue
            if _older_than(path, cutoff):
                path.unlink(missing_ok=True)
                report.blobs.append(path.name)
        for path in self.incoming_dir.glob("*") if self.incoming_dir.is_dir() else ():
            if path.is_file() and _older_than(path, cutoff):
                path.unlink(missing_ok=True)
                report.partial_uploads.append(path.name)
        shards = {Path(uri).name.split(".", 1)[0] for uri in _referenced_shards(session)}
        for path in self.sample_dir.glob("*.npy") if self.sample_dir.is_dir() else ():
            if path.name.split(".", 1)[0] not in shards and _older_than(path, cutoff):
                path.unlink(missing_ok=True)
                report.shards.append(path.name)
        if report.blobs or report.partial_uploads or report.shards:
            logger.info(
                "swept %d orphan blobs, %d partial uploads and %d sample shards",
                len(report.blobs), len(report.partial_uploads), len(report.shards),
            )  # fmt: skip
        return report


@dataclass
class SweepReport:
    blobs: list[str] = field(default_factory=list)  # file names removed
    partial_uploads: list[str] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)  # sample shards (and their flags files)


def _referenced_shards(session: Session) -> set[str]:
    """The shards any version refers to: its `samples_uri`, or the shards of its segments."""
    rows = session.execute(
        select(DatasetVersion.samples_uri, DatasetVersion.sample_segments).where(
            DatasetVersion.samples_uri.is_not(None) | DatasetVersion.sample_segments.is_not(None)
        )
    )
    uris = set()
    for samples_uri, segments in rows:
        if samples_uri is not None:
            uris.add(samples_uri)
        uris.update(segment["shard"] for segment in segments or ())
    return uris


def _referenced(session: Session, sha256: str) -> bool:
    return session.scalar(select(DatasetVersion.id).where(DatasetVersion.blob_sha256 == sha256).limit(1)) is not None


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False
