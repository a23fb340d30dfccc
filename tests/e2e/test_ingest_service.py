"""A large upload through the running service: answered at once, read by the ingest worker (a
real Celery worker on the ingest queue), watched by the light client until ready, then audited;
one that cannot be read ends as a failed ingest with its reason and nothing of it kept."""

from __future__ import annotations

import io
import zipfile

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
