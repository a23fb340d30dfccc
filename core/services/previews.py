"""What a reviewer sees of a sample: a thumbnail of an image, the first values of a tabular row,
a time series downsampled for a sparkline.

The previews of a stored dataset are rendered once into one array file under
`<data dir>/previews/` named by the blob's content hash (so every version and job that shares
the blob shares them), a batch of samples at a time (read from the version's shards where it has
them), so rendering never holds the dataset or all its previews in memory. The ingest task
renders them when it stores a version; otherwise the first request that needs them does.
Afterwards each preview is one slice of a memory map.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from core.dataset import AuditDataset
from core.services import ConflictError, version_samples
from core.sample_store import ShardSink
from core.settings import Settings
from core.store import session_scope
from core.store.models import DatasetVersion

THUMBNAIL_SIDE = 128
ROW_VALUES = 24
SERIES_POINTS = 160
SERIES_CHANNELS = 3
RENDER_BATCH = 1024

DatasetLoader = Callable[[], AuditDataset]

_render_lock = threading.Lock()

logger = logging.getLogger(__name__)


def version_loader(version: DatasetVersion, settings: Settings) -> DatasetLoader:
    """Loads the version's samples once, when first called: its shards, memory-mapped, where it
    has any, else its blob (`core.services.version_samples.samples_dataset`)."""
    return functools.cache(lambda: version_samples.samples_dataset(version, settings))


def preview_array(version: DatasetVersion, settings: Settings, load: DatasetLoader) -> np.ndarray:
    """The version's previews by sample index, rendered first if they are not yet: images
    uint8 [N, C, h, w] (longer side at most `THUMBNAIL_SIDE`; a version's shards themselves when
    its images are no larger), rows float32 [N, ROW_VALUES or fewer], series float32 [N, C,
    SERIES_POINTS or fewer]."""
    if version.modality == "image":
        shards = version_samples.open_samples(version, settings)
        if shards is not None and max(shards.shape[-2:]) <= THUMBNAIL_SIDE:
            return shards  # images no larger than a thumbnail are their own thumbnails: no copy
    path = settings.data_dir / "previews" / f"{version.blob_sha256}-{version.modality}-{THUMBNAIL_SIDE}.npy"
    if not path.is_file():
        with _render_lock:
            if not path.is_file():
                _render_to(path, load(), version)
    return np.load(path, mmap_mode="r", allow_pickle=False)


def render_stored(sessions: sessionmaker[Session], version_id: int, settings: Settings) -> None:
    """Render a just-stored version's previews (the ingest task), outside any transaction. A
    failure is logged, not raised: the version is ready either way, and the first request that
    needs the previews renders them (and reports what is wrong)."""
    with session_scope(sessions) as session:
        version = session.get(DatasetVersion, version_id)
        if version is None or version.status != "ready":
            return
        session.expunge(version)  # its loaded columns stay readable after the transaction
    try:
        preview_array(version, settings, version_loader(version, settings))
    except Exception:
        logger.exception("rendering the previews of dataset version %s failed", version_id)


def thumbnail_png(array: np.ndarray, sample_index: int) -> bytes:
    image = np.asarray(array[sample_index])
    mode = "L" if image.shape[0] == 1 else "RGB"
    buffer = io.BytesIO()
    Image.fromarray(image[0] if mode == "L" else image.transpose(1, 2, 0), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_values(array: np.ndarray, sample_index: int) -> list:
    """A row's values, or a series' values per channel, as plain floats."""
    return np.asarray(array[sample_index], dtype=np.float64).round(4).tolist()


def _render_to(path: Path, dataset: AuditDataset, version: DatasetVersion) -> None:
    """Render every sample's preview into `path`, a batch at a time, under a name of this
    process's renamed into place: readers, and other processes rendering the same file, see it
    whole or not at all."""
    if len(dataset) != version.num_samples:
        raise ConflictError(
            f"dataset version {version.id} has {version.num_samples} samples but its file holds {len(dataset)}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    sink = None
    try:
        for start in range(0, max(1, len(dataset)), RENDER_BATCH):
            batch = _render(np.asarray(dataset.x[start : start + RENDER_BATCH]), dataset.modality)
            if sink is None:
                sink = ShardSink(partial, (len(dataset), *batch.shape[1:]), batch.dtype)
            for offset, row in enumerate(batch):
                sink.put(start + offset, row)
        sink.finish()
        os.replace(partial, path)
    except BaseException:
        if sink is not None:
            sink.discard()
        raise


def _render(samples: np.ndarray, modality: str) -> np.ndarray:
    if modality == "image":
        return _thumbnails(samples)
    if modality == "tabular":
        return samples[:, :ROW_VALUES].astype(np.float32)
    return _downsampled_series(samples[:, :SERIES_CHANNELS])


def _thumbnails(images: np.ndarray) -> np.ndarray:
    height, width = images.shape[-2:]
    scale = THUMBNAIL_SIDE / max(height, width)
    if scale >= 1:
        return images
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    batch = torch.from_numpy(np.ascontiguousarray(images)).float()
    return torch.nn.functional.interpolate(batch, size=size, mode="area").round().to(torch.uint8).numpy()


def _downsampled_series(series: np.ndarray) -> np.ndarray:
    """Mean of each of at most `SERIES_POINTS` equal stretches of every series."""
    length = series.shape[-1]
    if length <= SERIES_POINTS:
        return series.astype(np.float32)
    edges = np.linspace(0, length, SERIES_POINTS + 1).round().astype(int)
    return np.add.reduceat(series, edges[:-1], axis=-1).astype(np.float32) / np.diff(edges).astype(np.float32)
