"""A large upload through the running service: answered at once, read by the ingest worker (a
real Celery worker on the ingest queue), watched by the light client until ready, then audited;
one that cannot be read ends as a failed ingest with its reason and nothing of it kept."""

from __future__ import annotations

import io
import zipfile

import httpx
import numpy as np
import pytest
from PIL import Image

from api.client import LilawAPIError, LilawClient
from core.loaders import load_dataset

NUM_IMAGES = 300


@pytest.fixture
def service_settings(service_settings: dict) -> dict:
    return {**service_settings, "inline_ingest_max_bytes": 1024}


def _digits_zip(path, count: int):
    digits = load_dataset("digits", limit=count)
    with zipfile.ZipFile(path, "w") as archive:
        for index, (pixels, label) in enumerate(zip(digits.x, digits.y)):
            png = io.BytesIO()
            Image.fromarray(pixels[0]).save(png, format="PNG")
            archive.writestr(f"{digits.class_names[label]}/{index}.png", png.getvalue())
    return path


def test_a_large_upload_is_ingested_by_the_ingest_worker_then_audited(service, tmp_path):
    seen = []
    with LilawClient(service.url, service.api_key, timeout=30) as client:
        dataset = client.upload_dataset(_digits_zip(tmp_path / "digits.zip", NUM_IMAGES), on_progress=seen.append, timeout=120)
        assert dataset.status == "ready", service.logs()
        assert [(v.status, v.num_samples, v.format) for v in dataset.versions] == [("ready", NUM_IMAGES, "imagefolder")]
        assert seen[0].status in ("ingesting", "ready") and seen[-1].status == "ready"

        job = client.wait(client.submit_audit(dataset.id, epochs=1, batch_size=64).id, timeout=240)
        assert job.status.value == "succeeded", f"{job.error}\n{service.logs()}"
        assert len(list(client.suspects(job.id, limit=NUM_IMAGES))) == NUM_IMAGES

        broken = tmp_path / "broken.zip"
        broken.write_bytes(_digits_zip(tmp_path / "whole.zip", 40).read_bytes()[:-200] + b"\0" * 2000)
        with pytest.raises(LilawAPIError) as failed:
            client.upload_dataset(broken, timeout=120)
        assert failed.value.status_code == 422 and "broken.zip" in failed.value.detail
        [failed_dataset] = [d for d in client.datasets() if d.name == "broken"]
        assert failed_dataset.status == "failed" and failed_dataset.versions == []
    blobs = service.settings.blob_dir
    assert sorted(path.name.split(".", 1)[1] for path in blobs.glob("*") if path.is_file()) == ["zip"]
    assert len(list(service.settings.sample_dir.glob("*.npy"))) == 1  # the ingested version's shard only


def test_a_large_append_is_ingested_by_the_ingest_worker_into_a_shard_of_the_added_rows(service, tmp_path):
    digits = load_dataset("digits", limit=NUM_IMAGES + 100)
    more = tmp_path / "more.zip"
    with zipfile.ZipFile(more, "w") as archive:
        for index in range(NUM_IMAGES, NUM_IMAGES + 100):
            png = io.BytesIO()
            Image.fromarray(digits.x[index][0]).save(png, format="PNG")
            archive.writestr(f"{digits.class_names[digits.y[index]]}/{index}.png", png.getvalue())
    with LilawClient(service.url, service.api_key, timeout=30) as client:
        dataset = client.upload_dataset(_digits_zip(tmp_path / "digits.zip", NUM_IMAGES), timeout=120)
        seen = []
        appended = client.append_samples(dataset.id, more, on_progress=seen.append, timeout=120)
        assert appended.dataset.status == "ready" and appended.version == 2, service.logs()
        assert appended.num_added + appended.num_duplicates == 100 and appended.num_added > 0  # digits repeat
        assert seen[-1].status == "ready"

        job = client.wait(client.submit_audit(dataset.id, epochs=1, batch_size=64).id, timeout=240)
        assert job.status.value == "succeeded", f"{job.error}\n{service.logs()}"
        assert len(list(client.suspects(job.id, limit=1000))) == NUM_IMAGES + appended.num_added
    shards = sorted(service.settings.sample_dir.glob("*.npy"), key=lambda path: path.stat().st_mtime)
    assert [len(np.load(path, mmap_mode="r")) for path in shards] == [NUM_IMAGES, appended.num_added]
    # The last added sample's thumbnail and full image are its pixels in the added rows' shard,
    # read from it (images this small are their own thumbnails: no copy is rendered).
    last_added = np.load(shards[1])[-1][0]
    for name in ("thumbnail.png", "image.png"):
        response = httpx.get(
            f"{service.url}/jobs/{job.id}/samples/{NUM_IMAGES + appended.num_added - 1}/{name}",
            headers={"Authorization": f"Bearer {service.api_key}"}, timeout=30,
        )
        assert response.status_code == 200, response.text
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(response.content))), last_added)
    assert not list((service.settings.data_dir / "previews").glob("*.npy"))
