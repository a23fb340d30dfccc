"""How a dataset grows: samples appended as a new version, reviewers' relabels applied as a new
version, and what changed between two versions.

Versions are immutable snapshots. Appending or applying relabels loads the latest version, builds
the next one in memory and stores it as an .npz blob (`x`, `y`, `sample_ids`, `class_names`),
so the worker reads every version the same way; except relabels without removals of a version
whose samples are in a shard (`core.services.ingest`): the new version writes only its labels
(its sample rows) and shares the shard and the blob. A sample keeps its id in every version; its
known flag (`Sample.is_mislabeled`) is carried over from the version it came from.

Exact duplicates are found by content: `core.dataset.content_hashes` digests each sample as
loaded (pixels after resizing, features as float32), once, when its version is stored
(`Sample.content_hash`). An appended sample whose content is already in the dataset, or earlier
in the same upload, is reported and not added.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.dataset import AuditDataset, content_hashes
from core.errors import AuditError, DatasetError
from core.loaders import load_dataset
from core.services import ConflictError
from core.services.blobs import Blob, BlobStore, dataset_source, shown_as, version_file_errors
from core.services.datasets import add_version, check_sample_ids, get_dataset, get_version, require_ready
from core.sample_store import open_shard
from core.services.decisions import version_decisions
from core.settings import Settings
from core.store.models import Dataset, DatasetVersion, Sample
from core.verdicts import REMOVED

# How many duplicates, added, removed or relabeled sample ids a version's `change` and a diff list.
LISTED_IDS = 100


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


def append_samples(
    session: Session, store: BlobStore, settings: Settings, owner_id: int, dataset_id: int, blob: Blob
) -> tuple[Dataset, list[Duplicate]]:
    """A new version of the dataset: its latest version plus the samples of the uploaded file that
    it does not hold yet. The file must hold the dataset's kind of data (modality, features, image
    channels); labels are matched by class name, and new class names are added after the existing
    ones. Returns the dataset and the duplicates that were left out. Raises `DatasetError` when the
    file cannot be appended (the blob is removed if this upload created it) and `ConflictError`
    when every sample in it is a duplicate."""
    base = get_version(session, owner_id, dataset_id, lock=True)  # one new version at a time
    try:
        require_ready(base)
        current = _from_rows(session, base, settings) if base.samples_uri is not None else _load(base, settings)
        appended = _load_appended(blob, base, current)
        check_sample_ids(appended)
        flags, hashes = _stored_samples(session, base, current)
        grown, duplicates, grown_hashes = _grow(current, hashes, appended)
    except AuditError:
        store.discard_if_unused(session, blob)
        raise
    if len(grown) == len(current):
        store.discard_if_unused(session, blob)
        first = duplicates[0]
        raise ConflictError(
            f"nothing to append: all {len(duplicates)} samples are already in the dataset "
            f"(e.g. {first.sample_id!r} duplicates {first.duplicate_of!r})"
        )
    flags += _appended_flags(appended, duplicates)
    new_classes = grown.class_names[len(current.class_names) :]
    change = {
        "kind": "append",
        "source": blob.path.name,
        "num_added": len(grown) - len(current),
        "num_duplicates": len(duplicates),
        "duplicates": [{"sample_id": d.sample_id, "duplicate_of": d.duplicate_of} for d in duplicates[:LISTED_IDS]],
        "new_classes": new_classes,
    }
    dataset = _store_version(session, store, owner_id, base, grown, flags, grown_hashes, change)
    return dataset, duplicates


def apply_relabels(
    session: Session, store: BlobStore, settings: Settings, owner_id: int, dataset_id: int
) -> Dataset:
    """A new version of the dataset with the reviewers' decisions applied to its latest version:
    a sample the reviewers agree to relabel gets the new label (and is known correct: flag false),
    one they agree to remove is left out. Samples with conflicting decisions stay as they are.
    Raises `ConflictError` when there is nothing to apply."""
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
    removes = any(outcome == REMOVED for outcome in changes.values())
    # Labels only: a version whose samples are in a shard shares it (and its blob) with the new one.
    labels_only = not removes and base.samples_uri is not None
    current = _from_rows(session, base, settings) if labels_only else _load(base, settings)
    flags, hashes = _stored_samples(session, base, current)
    class_index = {name: i for i, name in enumerate(current.class_names)}
    keep = np.array([changes.get(i) != REMOVED for i in range(len(current))])
    y = current.y.copy()
    for index, outcome in changes.items():
        if outcome != REMOVED:
            y[index] = class_index[outcome]
            flags[index] = False
    relabeled = [i for i, outcome in changes.items() if outcome != REMOVED]
    removed = [i for i, outcome in changes.items() if outcome == REMOVED]
    current.y = y
    changed = current if labels_only else current.subset(np.flatnonzero(keep))
    change = {
        "kind": "relabel",
        "num_relabeled": len(relabeled),
        "num_removed": len(removed),
        "num_conflicts": sum(1 for outcome in outcomes.values() if outcome is None),
    }
    kept_flags = [flag for flag, kept in zip(flags, keep) if kept]
    kept_hashes = [digest for digest, kept in zip(hashes, keep) if kept]
    if labels_only:
        name = get_dataset(session, owner_id, base.dataset_id).name
        changed.meta = {"format": base.format}
        return add_version(
            session, owner_id, name, changed, blob_sha256=base.blob_sha256, blob_uri=base.blob_uri, flags=kept_flags,
            hashes=kept_hashes, parent_version=base.version, change=change, samples_uri=base.samples_uri,
        )  # fmt: skip
    return _store_version(session, store, owner_id, base, changed, kept_flags, kept_hashes, change)


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


def _load(version: DatasetVersion, settings: Settings) -> AuditDataset:
    with version_file_errors(version, settings):
        return load_dataset(dataset_source(version, settings), modality=version.modality)


def _from_rows(session: Session, version: DatasetVersion, settings: Settings) -> AuditDataset:
    """A version whose samples are in a shard, with its sample rows' ids and labels; the
    shard is memory-mapped, not read."""
    rows = session.execute(
        select(Sample.sample_id, Sample.label).where(Sample.dataset_version_id == version.id).order_by(Sample.sample_index)
    ).all()
    return AuditDataset(
        name=str(version.dataset_id), modality=version.modality, x=open_shard(settings.data_dir / version.samples_uri),
        y=np.array([label for _, label in rows], dtype=np.int64), class_names=list(version.class_names),
        sample_ids=[sample_id for sample_id, _ in rows],
    )  # fmt: skip


def _load_appended(blob: Blob, base: DatasetVersion, current: AuditDataset) -> AuditDataset:
    shape = current.input_shape
    image_size = shape[1] if base.modality == "image" and shape[1] == shape[2] else None
    with shown_as(blob.path, blob.shown_name):
        appended = load_dataset(blob.path, modality=base.modality, image_size=image_size)
    if appended.input_shape != shape:
        raise DatasetError(
            f"{blob.shown_name} holds samples of shape {appended.input_shape}; "
            f"the dataset's {base.modality} samples have shape {shape}"
        )
    return appended


def _grow(
    current: AuditDataset, current_hashes: list[str], appended: AuditDataset
) -> tuple[AuditDataset, list[Duplicate], list[str]]:
    """`current` plus the samples of `appended` not in it, the duplicates left out, and the
    content hashes of the grown dataset's samples."""
    known = dict(zip(current_hashes, current.sample_ids))
    existing_ids = set(current.sample_ids)
    keep, added_hashes, duplicates, clashes = [], [], [], []
    for index, (digest, sample_id) in enumerate(zip(content_hashes(appended.x), appended.sample_ids)):
        if digest in known:
            duplicates.append(Duplicate(sample_id, known[digest]))
        elif sample_id in existing_ids:
            clashes.append(sample_id)
        else:
            known[digest] = sample_id
            keep.append(index)
            added_hashes.append(digest)
    if clashes:
        shown = ", ".join(repr(sample_id) for sample_id in clashes[:5])
        raise DatasetError(
            f"{len(clashes)} appended sample id(s) are already in the dataset with other content: {shown}; "
            "give new samples new ids"
        )
    class_names = current.class_names + [name for name in appended.class_names if name not in current.class_names]
    to_class = np.array([class_names.index(name) for name in appended.class_names], dtype=np.int64)
    added = appended.subset(np.array(keep, dtype=np.int64))
    grown = AuditDataset(
        name=current.name,
        modality=current.modality,
        x=np.concatenate([current.x, added.x.astype(current.x.dtype)]),
        y=np.concatenate([current.y, to_class[added.y]]),
        class_names=class_names,
        sample_ids=current.sample_ids + added.sample_ids,
    )
    return grown, duplicates, current_hashes + added_hashes


def _stored_samples(
    session: Session, version: DatasetVersion, loaded: AuditDataset
) -> tuple[list[bool | None], list[str]]:
    """The known flags and content hashes of the version's samples, in sample order; the hashes
    are computed from `loaded` (the version as loaded) for versions stored without them."""
    rows = session.execute(
        select(Sample.is_mislabeled, Sample.content_hash)
        .where(Sample.dataset_version_id == version.id)
        .order_by(Sample.sample_index)
    ).all()
    hashes = [digest for _, digest in rows]
    if any(digest is None for digest in hashes):
        hashes = content_hashes(loaded.x)
    return [flag for flag, _ in rows], hashes


def _appended_flags(appended: AuditDataset, duplicates: list[Duplicate]) -> list[bool | None]:
    left_out = {duplicate.sample_id for duplicate in duplicates}
    flags = [None] * len(appended) if appended.is_mislabeled is None else appended.is_mislabeled.tolist()
    return [flag for sample_id, flag in zip(appended.sample_ids, flags) if sample_id not in left_out]


def _labels_by_id(session: Session, version: DatasetVersion) -> dict[str, str]:
    rows = session.execute(
        select(Sample.sample_id, Sample.label).where(Sample.dataset_version_id == version.id).order_by(Sample.sample_index)
    )
    return {sample_id: version.class_names[label] for sample_id, label in rows}


def _store_version(
    session: Session,
    store: BlobStore,
    owner_id: int,
    base: DatasetVersion,
    dataset: AuditDataset,
    flags: list[bool | None],
    hashes: list[str],
    change: dict[str, Any],
) -> Dataset:
    blob = store.save_arrays(
        {
            "x": dataset.x,
            "y": dataset.y,
            "sample_ids": np.array(dataset.sample_ids),
            "class_names": np.array(dataset.class_names),
        }
    )
    name = get_dataset(session, owner_id, base.dataset_id).name
    dataset.meta = {"format": "npz"}
    return add_version(
        session, owner_id, name, dataset, blob_sha256=blob.sha256, blob_uri=blob.uri,
        flags=flags, hashes=hashes, parent_version=base.version, change=change,
    )  # fmt: skip
