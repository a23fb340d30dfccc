"""The full-size image of a sample, for a reviewer's zoom: the image as the audit loaded it (the
dataset's own size), where the thumbnail may be scaled down.

Images no larger than a thumbnail are their own thumbnail (`previews` keeps them as they are).
A larger one is read from the version's shards where it has them (one row); for a version whose
samples are only in its blob, the full-size images are written once, next to the previews, into
one array file named by the blob's content hash, and each image is one slice of a memory map.
"""

from __future__ import annotations

import threading

import numpy as np

from core.services import InvalidParameterError, NotFoundError, previews, version_samples
from core.services.artifacts import write_atomically
from core.settings import Settings
from core.store.models import AuditJob, DatasetVersion

_render_lock = threading.Lock()


def full_image_png(job: AuditJob, settings: Settings, sample_index: int) -> bytes:
    """A PNG of an image sample of the job at the dataset's size."""
    version = job.dataset_version
    if version.modality != "image":
        raise InvalidParameterError(f"job {job.id} audits {version.modality} data, which has no images")
    if not 0 <= sample_index < version.num_samples:
        raise NotFoundError(f"job {job.id} has no sample {sample_index}")
    load = previews.version_loader(version, settings)
    thumbnails = previews.preview_array(version, settings, load)
    if max(thumbnails.shape[-2:]) < previews.THUMBNAIL_SIDE:  # never scaled down: the images themselves
        return previews.thumbnail_png(thumbnails, sample_index)
    shards = version_samples.open_samples(version, settings)
    if shards is not None:
        return previews.thumbnail_png(np.asarray(shards[sample_index : sample_index + 1], dtype=np.uint8), 0)
    return previews.thumbnail_png(_full_array(version, settings, load), sample_index)


def _full_array(version: DatasetVersion, settings: Settings, load: previews.DatasetLoader) -> np.ndarray:
    path = settings.data_dir / "previews" / f"{version.blob_sha256}-image-full.npy"
    if not path.is_file():
        with _render_lock:
            if not path.is_file():
                images = np.ascontiguousarray(load().x, dtype=np.uint8)
                write_atomically(path, lambda file: np.save(file, images, allow_pickle=False))
    return np.load(path, mmap_mode="r", allow_pickle=False)
