"""A dataset version's decoded samples on disk: the segments of shards it refers to
(`core.sample_store`), as the worker, downloads, appends and relabels open them.

Where a version's samples are:
- `DatasetVersion.sample_segments` set: rows of several shards, in order (an append: its parent's
  segments plus one shard of the added rows; a relabel with removals: its parent's segments split
  around the removed rows);
- else `samples_uri` set: the whole of that one shard (an upload; a labels-only relabel shares its
  parent's);
- else none: the samples are read from the blob (small uploads with a test split, built-ins,
  versions stored before shards). An append or relabel of such a version first writes its samples
  into a shard, once (`segments_for_growth`), and the new version refers to that shard; the
  parent's row is left as it is, versions being immutable.

The segments are kept in the database, not in a manifest file: they are written in the
transaction that stores the version (a rolled-back append leaves none behind to clean up), the
orphan sweep finds every referenced shard with one query, and the worker reads them with the
version's row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.dataset import AuditDataset, content_hashes
from core.errors import DatasetError
from core.loaders import load_dataset
from core.sample_store import RowReader, Segment, SegmentedRows, ShardPart, flags_path, open_segments, write_shard
from core.services.blobs import dataset_source, version_file_errors
from core.settings import Settings
from core.store.models import DatasetVersion

HASH_CHUNK = 4096


def segments_of(version: DatasetVersion) -> list[Segment] | None:
    """The version's segments (one whole shard for `samples_uri`), or None when it has no shard."""
    if version.sample_segments is not None:
        return [Segment.from_json(segment) for segment in version.sample_segments]
    if version.samples_uri is not None:
        return [Segment(version.samples_uri, 0, version.num_samples)]
    return None


def open_samples(version: DatasetVersion, settings: Settings) -> np.memmap | SegmentedRows | None:
    """The version's samples as one array-like (not read: memory-mapped shards), or None when they
    are in its blob. A missing or unreadable shard is a `DatasetError` naming the version."""
    segments = segments_of(version)
    if segments is None:
        return None
    try:
        samples = open_segments(settings.data_dir, segments)
    except (OSError, ValueError) as error:
        raise DatasetError(f"the samples of dataset version {version.version} cannot be read: {error}") from None
    if len(samples) != version.num_samples:
        raise DatasetError(
            f"dataset version {version.version} has {version.num_samples} samples but its shards hold {len(samples)}"
        )
    return samples


def samples_dataset(version: DatasetVersion, settings: Settings) -> AuditDataset:
    """The version's samples as a dataset, for what reads only them (previews, downloads): its
    shards, memory-mapped, where it has any (ids and labels are left empty here: they are its
    sample rows'), else the blob as loaded."""
    if segments_of(version) is None:
        with version_file_errors(version, settings):
            return load_dataset(
                dataset_source(version, settings), modality=version.modality, max_pixels=settings.max_decoded_pixels
            )
    samples = open_samples(version, settings)
    return AuditDataset(
        name=str(version.dataset_id), modality=version.modality, x=samples, y=np.zeros(len(samples), dtype=np.int64),
        class_names=list(version.class_names), sample_ids=[""] * len(samples), meta={"format": version.format},
    )  # fmt: skip


def read_explicitly(samples: np.ndarray | np.memmap | SegmentedRows) -> np.ndarray | SegmentedRows:
    """A whole shard's memory map as `SegmentedRows`, whose slices are read from the file with
    explicit reads (`RowReader`), so that a reader going through every row (a download) does not
    fault the whole shard into its memory through the map; any other samples as they are."""
    if isinstance(samples, np.memmap):
        return SegmentedRows([ShardPart(samples, 0, len(samples))])
    return samples


def known_flags(version: DatasetVersion, settings: Settings) -> np.ndarray | None:
    """The known flags that the version's shards' files had (bool [N]), when every one of its
    shards kept them (`core.sample_store.flags_path`); else None."""
    parts = []
    for segment in segments_of(version) or ():
        path = flags_path(settings.data_dir / segment.shard)
        if not path.is_file():
            return None
        parts.append(np.load(path, mmap_mode="r")[segment.start : segment.stop])
    return np.concatenate(parts).astype(bool) if parts else None


def new_shard_path(settings: Settings) -> Path:
    return settings.sample_dir / f"{uuid.uuid4().hex}.npy"


def shard_uri(settings: Settings, path: Path) -> str:
    return path.relative_to(settings.data_dir).as_posix()


def remove_shard(path: Path) -> None:
    path.unlink(missing_ok=True)
    flags_path(path).unlink(missing_ok=True)


def hashes_of(
    samples: np.ndarray | np.memmap | SegmentedRows, on_chunk: Callable[[int], None] | None = None
) -> list[str]:
    """Every sample's content hash (`core.dataset.content_hashes`), a chunk at a time (shards read
    with explicit reads); `on_chunk(n)` is told how many are hashed after each chunk."""
    reader = RowReader(samples) if isinstance(samples, (np.memmap, SegmentedRows)) else None
    hashes: list[str] = []
    try:
        for start in range(0, len(samples), HASH_CHUNK):
            stop = start + HASH_CHUNK
            hashes += content_hashes(samples[start:stop] if reader is None else reader.read_range(start, stop))
            if on_chunk is not None:
                on_chunk(len(hashes))
    finally:
        if reader is not None:
            reader.close()
    return hashes


@dataclass(frozen=True)
class GrowthSegments:
    """The segments a new version grows from; `written` is the shard made for a parent that had
    none (remove it with `discard` when the new version is not stored)."""

    segments: list[Segment]
    written: Path | None = None

    def discard(self) -> None:
        if self.written is not None:
            remove_shard(self.written)


def segments_for_growth(version: DatasetVersion, settings: Settings) -> GrowthSegments:
    """The version's segments; for a version whose samples are only in its blob, the blob read
    once and its samples written into a new shard (with its known flags beside it)."""
    segments = segments_of(version)
    if segments is not None:
        return GrowthSegments(segments)
    with version_file_errors(version, settings):
        loaded = load_dataset(
            dataset_source(version, settings), modality=version.modality, max_pixels=settings.max_decoded_pixels
        )
    if len(loaded) != version.num_samples:
        raise DatasetError(
            f"dataset version {version.version} has {version.num_samples} samples but its file holds {len(loaded)}"
        )
    path = new_shard_path(settings)
    try:
        write_shard(path, loaded.x)
        if loaded.is_mislabeled is not None:
            np.save(flags_path(path), loaded.is_mislabeled)
    except BaseException:
        remove_shard(path)
        raise
    return GrowthSegments([Segment(shard_uri(settings, path), 0, len(loaded))], written=path)
