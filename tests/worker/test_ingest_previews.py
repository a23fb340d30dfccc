"""The previews of an ingested version, on SQLite and Postgres: rendered from its shard once it is
stored (as the ingest task does), a batch at a time, into thumbnails no larger than the thumbnail
side; a reviewer's full-size image is the sample's row of the shard."""

from __future__ import annotations

import io
import uuid
import zipfile
from types import SimpleNamespace

import numpy as np
from PIL import Image

from core.loaders import load_dataset
from core.services import ingest, previews, sample_images
from core.services.blobs import BlobStore
from core.store import DatasetVersion, Owner, session_scope

SIDE = 160  # larger than a thumbnail: the thumbnails are scaled down
NUM_IMAGES = 12


def _large_images_zip() -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(NUM_IMAGES, SIDE, SIDE), dtype=np.uint8)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, pixels in enumerate(images):
            png = io.BytesIO()
            Image.fromarray(pixels).save(png, format="PNG")
            archive.writestr(f"{'ab'[index % 2]}/{index:02d}.png", png.getvalue())
    return buffer.getvalue(), images


def test_an_ingested_version_has_its_thumbnails_rendered_and_its_full_images_read_from_its_shard(
    sessions, settings, monkeypatch
):
    data, images = _large_images_zip()
    writer = BlobStore(settings).writer("large.zip")
    writer.write(data)
    blob = writer.finish()
    with session_scope(sessions) as session:
        owner = Owner(name=f"owner-{uuid.uuid4().hex[:8]}")
        session.add(owner)
        session.flush()
        version_id = ingest.ingesting_version_id(ingest.start_ingest(session, owner.id, "large", blob, modality=None))
    assert ingest.run_ingest(sessions, version_id, settings) == "ready"

    monkeypatch.setattr(previews, "RENDER_BATCH", 5)  # several batches
    previews.render_stored(sessions, version_id, settings)
    [rendered] = (settings.data_dir / "previews").glob("*.npy")
    thumbnails = np.load(rendered)
    assert thumbnails.shape == (NUM_IMAGES, 1, previews.THUMBNAIL_SIDE, previews.THUMBNAIL_SIDE)

    with session_scope(sessions) as session:
        version = session.get(DatasetVersion, version_id)
        session.expunge(version)
    loaded = load_dataset(blob.path)  # the order the version holds its samples in
    job = SimpleNamespace(id=0, dataset_version=version)
    for index in (0, NUM_IMAGES - 1):
        full = Image.open(io.BytesIO(sample_images.full_image_png(job, settings, index)))
        assert np.array_equal(np.asarray(full), loaded.x[index, 0])
        assert any(np.array_equal(loaded.x[index, 0], image) for image in images)
    assert not list((settings.data_dir / "previews").glob("*full*"))  # no copy of the full images
