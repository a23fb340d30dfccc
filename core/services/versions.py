"""How a dataset grows: samples appended as a new version, reviewers' relabels applied as a new
version, and what changed between two versions.

Versions are immutable snapshots that write only what changed (`core.services.version_samples`):
- an append's samples are its parent's segments of shards plus one new shard holding only the
  added rows (`read_appended` writes it, streamed; duplicates are found with the parent's stored
  content hashes, never by reading the parent's samples again). A small file is appended inside
  its request (`append_samples`); a larger one by the ingest task (`start_append`, then
  `core.services.ingest.run_ingest`), with the dataset's ingest percent as for uploads;
- a relabel with removals refers to its parent's segments split around the removed rows; a
  labels-only relabel shares its parent's samples and blob: either writes only sample rows.
A version whose samples are in several segments has as its blob a small manifest (`.npz` of the
segments, content-addressed), so that what is keyed by a version's blob (previews) tells apart
versions of different samples. A parent whose samples are only in its blob has them written into
a shard once, when it is first grown from.

A sample keeps its id in every version; its known flag (`Sample.is_mislabeled`) is carried over
from the version it came from. Exact duplicates are found by content: `core.dataset.content_hashes`
digests each sample as loaded (pixels after resizing, features as float32), once, when its
version is stored (`Sample.content_hash`). An appended sample whose content is already in the
dataset, or earlier in the same upload, is reported and not added. A failed append stores nothing:
no version, no shard; the parent stays the latest, ready.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.dataset import AuditDataset
from core.errors import AuditError, DatasetError
from core.loaders import load_dataset
from core.sample_store import (
    RowReader,
    Segment,
    ShardSink,
    compact,
    flags_path,
    open_segments,
    segments_without,
    shard_sink,
)
from core.services import ConflictError
from core.services.blobs import Blob, BlobStore, shown_as
from core.services.datasets import add_version, check_sample_ids, get_dataset, get_version, require_ready
from core.services.decisions import version_decisions
from core.services.version_samples import (
    GrowthSegments,
    hashes_of,
    new_shard_path,
    remove_shard,
    segments_for_growth,
    shard_uri,
)
from core.settings import Settings
from core.store.models import Dataset, DatasetVersion, Sample
from core.verdicts import REMOVED

# How many duplicates, added, removed or relabeled sample ids a version's `change` and a diff list.
LISTED_IDS = 100
SEGMENTS_FORMAT = "segments"  # the format of a version whose blob is its segments' manifest
APPEND_CHUNK_ROWS = 4096
# The percent of an append read by the ingest task: the file up to READ_PERCENT, then hashing and
# writing the added rows up to WRITE_PERCENT, then storing.
READ_PERCENT, WRITE_PERCENT = 70, 95

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Duplicate:
    sample_id: str  # as uploaded
    duplicate_of: str  # the sample already in the dataset (or earlier in the upload)


@dataclass(frozen=True)
class Relabel:
    sample_id: str
    old_label: str
    new_label: str


@dataclass
class VersionDiff:
    """What changed from version `base` to version `version` of a dataset, by sample id."""

    base: int
    version: int
    num_added: int = 0
    num_removed: int = 0
    num_relabeled: int = 0
    num_unchanged: int = 0
    added: list[str] = field(default_factory=list)  # the first LISTED_IDS of each
    removed: list[str] = field(default_factory=list)
    relabeled: list[Relabel] = field(default_factory=list)


@dataclass
class StoredSamples:
    """A version's sample rows, in sample order, as a new version is built from them."""

    sample_ids: list[str]
    labels: np.ndarray  # int64 [N], indexes into `class_names`
    flags: list[bool | None]
    hashes: list[str | None]
    class_names: list[str]
    modality: str


@dataclass
class ParentSamples:
    """What an append needs of the version it grows: its rows and its samples' segments."""

    stored: StoredSamples
    growth: GrowthSegments
    row_shape: tuple[int, ...]
    dtype: np.dtype
    hashes: list[str]  # every sample's (computed from its shards where a row had none)


@dataclass
class AppendedRows:
    """The samples of an appended file that are new to the dataset, in a shard of their own."""

    shard: Path
    sample_ids: list[str]
    labels: np.ndarray  # int64, indexes into `class_names`
    flags: list[bool | None]
    hashes: list[str]
    class_names: list[str]  # the parent's, then the file's new ones
    duplicates: list[Duplicate]
    source: str

    def discard(self) -> None:
        remove_shard(self.shard)

    def change(self, parent: ParentSamples) -> dict[str, Any]:
        return {
            "kind": "append",
            "source": self.source,
            "num_added": len(self.sample_ids),
            "num_duplicates": len(self.duplicates),
            "duplicates": [
                {"sample_id": duplicate.sample_id, "duplicate_of": duplicate.duplicate_of}
                for duplicate in self.duplicates[:LISTED_IDS]
            ],
            "new_classes": self.class_names[len(parent.stored.class_names) :],
        }


def append_samples(
    session: Session, store: BlobStore, settings: Settings, owner_id: int, dataset_id: int, blob: Blob
) -> tuple[Dataset, list[Duplicate]]:
    """A new version of the dataset, inside the caller's transaction: its latest version plus the
    samples of the uploaded file that it does not hold yet. The file must hold the dataset's kind
    of data (modality, features, image channels); labels are matched by class name, and new class
    names are added after the existing ones. Returns the dataset and the duplicates that were left
    out. Raises `DatasetError` when the file cannot be appended (the blob is removed if this
    upload created it) and `ConflictError` when every sample in it is a duplicate."""
    base = get_version(session, owner_id, dataset_id, lock=True)  # one new version at a time
    require_ready(base)
    parent = None
    try:
        parent = parent_samples(settings, base, stored_samples(session, base))
        appended = read_appended(settings, parent, blob.path, blob.shown_name)
    except AuditError:
        if parent is not None:
            parent.growth.discard()
        store.discard_if_unused(session, blob)
        raise
    try:
        dataset = store_append(session, store, settings, owner_id, base, parent, appended)
    except BaseException:
        appended.discard()
        parent.growth.discard()
        raise
    return dataset, appended.duplicates


def start_append(session: Session, owner_id: int, dataset_id: int, blob: Blob) -> Dataset:
    """The next version of the dataset, 'ingesting' the appended file: the caller commits, then
    queues the ingest task on it (`core.services.ingest.run_ingest`). Its row refers to the blob,
    so neither the request's cleanup nor the orphan sweep removes the file meanwhile."""
    base = get_version(session, owner_id, dataset_id, lock=True)
    require_ready(base)
    session.add(
        DatasetVersion(
            dataset_id=base.dataset_id, version=base.version + 1, blob_sha256=blob.sha256, blob_uri=blob.uri,
            format="pending", modality=base.modality, num_samples=0, num_classes=0, class_names=[],
            parent_version=base.version, change={"kind": "append", "source": blob.shown_name}, status="ingesting",
        )
    )  # fmt: skip
    dataset = get_dataset(session, owner_id, dataset_id)
    dataset.status, dataset.ingest_percent, dataset.ingest_error = "ingesting", 0, None
    session.flush()
    return get_dataset(session, owner_id, dataset_id)


def stored_samples(session: Session, version: DatasetVersion) -> StoredSamples:
    rows = session.execute(
        select(Sample.sample_id, Sample.label, Sample.is_mislabeled, Sample.content_hash)
        .where(Sample.dataset_version_id == version.id)
        .order_by(Sample.sample_index)
    ).all()
    return StoredSamples(
        sample_ids=[row.sample_id for row in rows],
        labels=np.fromiter((row.label for row in rows), dtype=np.int64, count=len(rows)),
        flags=[row.is_mislabeled for row in rows],
        hashes=[row.content_hash for row in rows],
        class_names=list(version.class_names),
        modality=version.modality,
    )


def parent_samples(settings: Settings, version: DatasetVersion, stored: StoredSamples) -> ParentSamples:
    """The version an append grows, its samples in shards (written once for a version that had
    only its blob: remove them with `growth.discard()` when the append is not stored). Its
    samples are read only where its rows were stored without content hashes."""
    growth = segments_for_growth(version, settings)
    try:
        samples = open_segments(settings.data_dir, growth.segments)
        hashes = stored.hashes if None not in stored.hashes else hashes_of(samples)
    except (OSError, ValueError) as error:
        growth.discard()
        raise DatasetError(f"the samples of dataset version {version.version} cannot be read: {error}") from None
    return ParentSamples(stored, growth, tuple(samples.shape[1:]), samples.dtype, hashes)


def read_appended(
    settings: Settings, parent: ParentSamples, path: Path, shown_name: str, on_percent: Progress | None = None
) -> AppendedRows:
    """Read the file at `path` (errors name it `shown_name`) against the parent: its samples are
    decoded into a scratch shard, hashed, and those new to the dataset written to a shard of
    their own (the scratch shard itself when all are new). Raises `DatasetError` for a file of
    another kind or shape, or a new sample under a taken id, `ConflictError` when every sample is
    a duplicate; nothing stays on disk then."""
    report = on_percent or (lambda _percent: None)
    shape, modality = parent.row_shape, parent.stored.modality
    image_size = shape[1] if modality == "image" and shape[1] == shape[2] else None
    scratch, added = new_shard_path(settings), new_shard_path(settings)
    try:
        with shown_as(path, shown_name):
            loaded = load_dataset(
                path, modality=modality, image_size=image_size, max_pixels=settings.max_decoded_pixels,
                sink=shard_sink(scratch), on_progress=lambda fraction: report(int(fraction * READ_PERCENT)),
            )  # fmt: skip
            check_sample_ids(loaded)
        if loaded.input_shape != shape:
            raise DatasetError(
                f"{shown_name} holds samples of shape {loaded.input_shape}; "
                f"the dataset's {modality} samples have shape {shape}"
            )
        report(READ_PERCENT)
        keep, hashes, duplicates = _new_samples(parent, loaded, shown_name, report)
        class_names = parent.stored.class_names + [
            name for name in loaded.class_names if name not in parent.stored.class_names
        ]
        to_class = np.array([class_names.index(name) for name in loaded.class_names], dtype=np.int64)
        flags = [None] * len(keep) if loaded.is_mislabeled is None else [bool(loaded.is_mislabeled[i]) for i in keep]
        if isinstance(loaded.x, np.memmap) and len(keep) == len(loaded) and loaded.x.dtype == parent.dtype:
            del loaded.x  # the scratch shard holds exactly the added rows
            scratch.replace(added)
        else:
            _write_rows(added, loaded.x, keep, parent.dtype)
        if loaded.is_mislabeled is not None:
            np.save(flags_path(added), loaded.is_mislabeled[keep])
        report(WRITE_PERCENT)
        return AppendedRows(
            shard=added, sample_ids=[loaded.sample_ids[i] for i in keep], labels=to_class[loaded.y[keep]],
            flags=flags, hashes=hashes, class_names=class_names, duplicates=duplicates, source=shown_name,
        )  # fmt: skip
    except BaseException:
        remove_shard(added)
        raise
    finally:
        remove_shard(scratch)


def _new_samples(
    parent: ParentSamples, loaded: AuditDataset, shown_name: str, report: Progress
) -> tuple[np.ndarray, list[str], list[Duplicate]]:
    """The indexes of the loaded samples new to the dataset, their content hashes (as they will
    be stored: in the parent's dtype), and the duplicates left out."""
    known = dict(zip(parent.hashes, parent.stored.sample_ids))
    existing_ids = set(parent.stored.sample_ids)
    reader = RowReader(loaded.x) if isinstance(loaded.x, np.memmap) else None
    keep, hashes, duplicates, clashes = [], [], [], []
    for start in range(0, len(loaded), APPEND_CHUNK_ROWS):
        stop = min(start + APPEND_CHUNK_ROWS, len(loaded))
        rows = loaded.x[start:stop] if reader is None else reader.read_range(start, stop)
        for offset, digest in enumerate(hashes_of(np.asarray(rows).astype(parent.dtype, copy=False))):
            index = start + offset
            sample_id = loaded.sample_ids[index]
            if digest in known:
                duplicates.append(Duplicate(sample_id, known[digest]))
            elif sample_id in existing_ids:
                clashes.append(sample_id)
            else:
                known[digest] = sample_id
                keep.append(index)
                hashes.append(digest)
        report(READ_PERCENT + (WRITE_PERCENT - READ_PERCENT) * stop // (2 * max(1, len(loaded))))
    if reader is not None:
        reader.close()
    if clashes:
        shown = ", ".join(repr(sample_id) for sample_id in clashes[:5])
        raise DatasetError(
            f"{shown_name}: {len(clashes)} appended sample id(s) are already in the dataset with other content: "
            f"{shown}; "
            "give new samples new ids"
        )
    if not keep:
        first = duplicates[0] if duplicates else None
        example = "" if first is None else f" (e.g. {first.sample_id!r} duplicates {first.duplicate_of!r})"
        raise ConflictError(
            f"{shown_name}: nothing to append: all {len(duplicates)} samples are already in the dataset{example}"
        )
    return np.array(keep, dtype=np.int64), hashes, duplicates


def _write_rows(path: Path, x: np.ndarray, keep: np.ndarray, dtype: np.dtype) -> None:
    """The rows `keep` of `x` (in memory or a shard) as a new shard at `path`, a chunk at a time."""
    reader = RowReader(x) if isinstance(x, np.memmap) else None
    sink = ShardSink(path, (len(keep), *x.shape[1:]), dtype)
    try:
        for start in range(0, len(keep), APPEND_CHUNK_ROWS):
            index = keep[start : start + APPEND_CHUNK_ROWS]
            rows = x[index] if reader is None else reader.read(index)
            for offset, row in enumerate(np.asarray(rows).astype(dtype, copy=False)):
                sink.put(start + offset, row)
        sink.finish()
    except BaseException:
        sink.discard()
        raise
    finally:
        if reader is not None:
            reader.close()


def store_append(
    session: Session, store: BlobStore, settings: Settings, owner_id: int, base: DatasetVersion,
    parent: ParentSamples, appended: AppendedRows, *, into: DatasetVersion | None = None,
) -> Dataset:
    """The parent's samples plus the appended ones as the dataset's next version (or as `into`,
    the ingesting version it completes): the parent's segments and the added rows' shard."""
    segments = parent.growth.segments + [Segment(shard_uri(settings, appended.shard), 0, len(appended.sample_ids))]
    stored = parent.stored
    grown = StoredSamples(
        sample_ids=stored.sample_ids + appended.sample_ids,
        labels=np.concatenate([stored.labels, appended.labels]),
        flags=stored.flags + appended.flags,
        hashes=parent.hashes + appended.hashes,
        class_names=appended.class_names,
        modality=stored.modality,
    )
    change = appended.change(parent)
    return _store_segments(session, store, settings, owner_id, base, grown, segments, change, into=into)


def apply_relabels(
    session: Session, store: BlobStore, settings: Settings, owner_id: int, dataset_id: int
) -> Dataset:
    """A new version of the dataset with the reviewers' decisions applied to its latest version:
    a sample the reviewers agree to relabel gets the new label (and is known correct: flag false),
    one they agree to remove is left out. Samples with conflicting decisions stay as they are.
    Only sample rows are written: the new version shares its parent's samples (split around the
    removed ones). Raises `ConflictError` when there is nothing to apply."""
    base = get_version(session, owner_id, dataset_id, lock=True)  # one new version at a time
    require_ready(base)
    reviews = version_decisions(session, base)
    outcomes = {index: review.outcome for index, review in reviews.items() if review.applicable}
    changes = {
        index: outcome for index, outcome in outcomes.items() if outcome is not None and outcome != reviews[index].label
    }
    if not changes:
        conflicts = sum(1 for outcome in outcomes.values() if outcome is None)
        raise ConflictError(
            f"version {base.version} has no agreed relabel or removal to apply"
            + (f" ({conflicts} sample(s) have conflicting decisions)" if conflicts else "")
        )
    stored = stored_samples(session, base)
    growth = segments_for_growth(base, settings)
    try:
        return _store_relabels(session, store, settings, owner_id, base, stored, growth, changes, outcomes)
    except BaseException:
        growth.discard()
        raise


def _store_relabels(
    session: Session, store: BlobStore, settings: Settings, owner_id: int, base: DatasetVersion,
    stored: StoredSamples, growth: GrowthSegments, changes: dict[int, str], outcomes: dict[int, str | None],
) -> Dataset:
    if None in stored.hashes:
        stored.hashes = hashes_of(open_segments(settings.data_dir, growth.segments))
    class_index = {name: i for i, name in enumerate(stored.class_names)}
    for index, outcome in changes.items():
        if outcome != REMOVED:
            stored.labels[index] = class_index[outcome]
            stored.flags[index] = False
    removed = sorted(index for index, outcome in changes.items() if outcome == REMOVED)
    change = {
        "kind": "relabel",
        "num_relabeled": len(changes) - len(removed),
        "num_removed": len(removed),
        "num_conflicts": sum(1 for outcome in outcomes.values() if outcome is None),
    }
    if removed:
        gone = set(removed)
        kept = [i for i in range(len(stored.sample_ids)) if i not in gone]
        stored = StoredSamples(
            sample_ids=[stored.sample_ids[i] for i in kept], labels=stored.labels[kept],
            flags=[stored.flags[i] for i in kept], hashes=[stored.hashes[i] for i in kept],
            class_names=stored.class_names, modality=stored.modality,
        )  # fmt: skip
        segments = segments_without(growth.segments, removed)
        return _store_segments(session, store, settings, owner_id, base, stored, segments, change)
    # Labels only: the same samples, so the parent's shard(s) and blob are shared.
    shares = base.samples_uri is not None or base.sample_segments is not None
    return _add(
        session, owner_id, base, stored, change, blob_sha256=base.blob_sha256, blob_uri=base.blob_uri,
        fmt=base.format, samples=open_segments(settings.data_dir, growth.segments),
        samples_uri=base.samples_uri if shares else growth.segments[0].shard,
        sample_segments=base.sample_segments,
    )  # fmt: skip


def diff_versions(session: Session, owner_id: int, dataset_id: int, base: int, version: int) -> VersionDiff:
    """What changed from version `base` to version `version` (either may be the older one)."""
    old, new = get_version(session, owner_id, dataset_id, base), get_version(session, owner_id, dataset_id, version)
    old_labels, new_labels = _labels_by_id(session, old), _labels_by_id(session, new)
    diff = VersionDiff(base=base, version=version)
    for sample_id, label in new_labels.items():
        previous = old_labels.get(sample_id)
        if previous is None:
            diff.num_added += 1
            if len(diff.added) < LISTED_IDS:
                diff.added.append(sample_id)
        elif previous != label:
            diff.num_relabeled += 1
            if len(diff.relabeled) < LISTED_IDS:
                diff.relabeled.append(Relabel(sample_id, previous, label))
        else:
            diff.num_unchanged += 1
    removed = [sample_id for sample_id in old_labels if sample_id not in new_labels]
    diff.num_removed, diff.removed = len(removed), removed[:LISTED_IDS]
    return diff


def _store_segments(
    session: Session, store: BlobStore, settings: Settings, owner_id: int, base: DatasetVersion,
    stored: StoredSamples, segments: list[Segment], change: dict[str, Any], *, into: DatasetVersion | None = None,
) -> Dataset:
    """`stored` as the next version, its samples `segments` (copied into one shard first when
    there are more than `settings.max_version_segments`) and its blob their manifest."""
    if len(segments) > settings.max_version_segments:
        compacted = new_shard_path(settings)
        compact(settings.data_dir, segments, compacted)
        segments = [Segment(shard_uri(settings, compacted), 0, len(stored.sample_ids))]
        try:
            return _store_segments(session, store, settings, owner_id, base, stored, segments, change, into=into)
        except BaseException:
            remove_shard(compacted)
            raise
    manifest = store.save_arrays({"segments": np.array(json.dumps([segment.as_json() for segment in segments]))})
    try:
        return _add(
            session, owner_id, base, stored, change, blob_sha256=manifest.sha256, blob_uri=manifest.uri,
            fmt=SEGMENTS_FORMAT, samples=open_segments(settings.data_dir, segments), samples_uri=None,
            sample_segments=[segment.as_json() for segment in segments], into=into,
        )  # fmt: skip
    except BaseException:
        store.discard_if_unused(session, manifest)
        raise


def _add(
    session: Session, owner_id: int, base: DatasetVersion, stored: StoredSamples, change: dict[str, Any], *,
    blob_sha256: str, blob_uri: str, fmt: str, samples, samples_uri: str | None,
    sample_segments: list[dict[str, Any]] | None, into: DatasetVersion | None = None,
) -> Dataset:
    if len(samples) != len(stored.sample_ids):
        raise DatasetError(
            f"{len(stored.sample_ids)} sample rows do not match the {len(samples)} samples of their shards"
        )
    dataset = AuditDataset(
        name=str(base.dataset_id), modality=stored.modality, x=samples, y=stored.labels,
        class_names=stored.class_names, sample_ids=stored.sample_ids, meta={"format": fmt},
    )  # fmt: skip
    name = get_dataset(session, owner_id, base.dataset_id).name
    return add_version(
        session, owner_id, name, dataset, blob_sha256=blob_sha256, blob_uri=blob_uri, flags=stored.flags,
        hashes=stored.hashes, parent_version=base.version, change=change, into=into, samples_uri=samples_uri,
        sample_segments=sample_segments,
    )  # fmt: skip


def _labels_by_id(session: Session, version: DatasetVersion) -> dict[str, str]:
    rows = session.execute(
        select(Sample.sample_id, Sample.label).where(Sample.dataset_version_id == version.id).order_by(Sample.sample_index)
    )
    return {sample_id: version.class_names[label] for sample_id, label in rows}
