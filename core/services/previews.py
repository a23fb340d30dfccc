"""What a reviewer sees of a sample: a thumbnail of an image, the first values of a tabular row,
a time series downsampled for a sparkline.

The previews of a stored dataset are rendered once, from the whole dataset, into one array file
under `<data dir>/previews/` named by the blob's content hash (so every version and job that
shares the blob shares them); afterwards each preview is one slice of a memory map.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image

from core.dataset import AuditDataset
from core.loaders import load_dataset
from core.services import ConflictError
from core.services.artifacts import write_atomically
from core.services.blobs import dataset_source, version_file_errors
from core.settings import Settings
from core.store.models import DatasetVersion

THUMBNAIL_SIDE = 128
ROW_VALUES = 24
SERIES_POINTS = 160
SERIES_CHANNELS = 3
RENDER_BATCH = 1024

DatasetLoader = Callable[[], AuditDataset]

_render_lock = threading.Lock()


def version_loader(version: DatasetVersion, settings: Settings) -> DatasetLoader:
    """Loads the dataset a version's blob holds, once, when first called."""

    @functools.cache
    def load() -> AuditDataset:
        source = dataset_source(version, settings)
        with version_file_errors(version, settings):
            return load_dataset(source, modality=version.modality, max_pixels=settings.max_decoded_pixels)

    return load


def preview_array(version: DatasetVersion, settings: Settings, load: DatasetLoader) -> np.ndarray:
    """The version's previews by sample index, rendered first if they are not yet: images
    uint8 [N, C, h, w] (longer side at most `THUMBNAIL_SIDE`), rows float32 [N, ROW_VALUES or
    fewer], series float32 [N, C, SERIES_POINTS or fewer]."""
    path = settings.data_dir / "previews" / f"{version.blob_sha256}-{version.modality}-{THUMBNAIL_SIDE}.npy"
    if not path.is_file():
        with _render_lock:
            if not path.is_file():
                rendered = np.ascontiguousarray(_render(load(), version))
                write_atomically(path, lambda file: np.save(file, rendered, allow_pickle=False))
    return np.load(path, mmap_mode="r", allow_pickle=False)


def thumbnail_png(array: np.ndarray, sample_index: int) -> bytes:
    image = np.asarray(array[sample_index])
    mode = "L" if image.shape[0] == 1 else "RGB"
    buffer = io.BytesIO()
    Image.fromarray(image[0] if mode == "L" else image.transpose(1, 2, 0), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def sample_values(array: np.ndarray, sample_index: int) -> list:
    """A row's values, or a series' values per channel, as plain floats."""
    return np.asarray(array[sample_index], dtype=np.float64).round(4).tolist()


def _render(dataset: AuditDataset, version: DatasetVersion) -> np.ndarray:
    if len(dataset) != version.num_samples:
        raise ConflictError(
            f"dataset version {version.id} has {version.num_samples} samples but its file holds {len(dataset)}"
        )
    if dataset.modality == "image":
        return _thumbnails(dataset.x)
    if dataset.modality == "tabular":
        return dataset.x[:, :ROW_VALUES].astype(np.float32)
    return _downsampled_series(dataset.x[:, :SERIES_CHANNELS])


def _thumbnails(images: np.ndarray) -> np.ndarray:
    height, width = images.shape[-2:]
    scale = THUMBNAIL_SIDE / max(height, width)
    if scale >= 1:
        return images
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    batches = []
    for start in range(0, len(images), RENDER_BATCH):
        batch = torch.from_numpy(np.ascontiguousarray(images[start : start + RENDER_BATCH])).float()
        batches.append(torch.nn.functional.interpolate(batch, size=size, mode="area").round().to(torch.uint8).numpy())
    return np.concatenate(batches)


def _downsampled_series(series: np.ndarray) -> np.ndarray:
    """Mean of each of at most `SERIES_POINTS` equal stretches of every series."""
    length = series.shape[-1]
    if length <= SERIES_POINTS:
        return series.astype(np.float32)
    edges = np.linspace(0, length, SERIES_POINTS + 1).round().astype(int)
    return np.add.reduceat(series, edges[:-1], axis=-1).astype(np.float32) / np.diff(edges).astype(np.float32)
