"""Hugging Face layouts through the API: a Parquet file in the `datasets` image layout and a
zipped save_to_disk folder are uploaded, their samples keep the `id` column as sample ids, and an
audit of each runs to the end through the worker's entry point (`execute_job`)."""

from __future__ import annotations

import io
import zipfile

import pyarrow.parquet as pq
import pytest
from sqlalchemy import select

from core.services.audit_runs import execute_job
from core.store import JobStatus, Sample
from tests.core.test_loaders.test_hf_parquet import CLASS_NAMES, digits_png_table, saved_dataset_members

SAMPLES = 120


def parquet_upload() -> bytes:
    table, _ = digits_png_table(SAMPLES)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def saved_dataset_upload() -> bytes:
    table, _ = digits_png_table(SAMPLES)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in saved_dataset_members(table, "digits_hf/").items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("filename", "build", "file_format"),
    [("digits.parquet", parquet_upload, "hf-parquet"), ("digits_hf.zip", saved_dataset_upload, "hf-save-to-disk")],
)
def test_a_hugging_face_upload_is_audited_with_its_ids(client, alice, sessions, settings, filename, build, file_format):
    response = client.post("/datasets", files={"file": (filename, build())}, headers=alice)
    assert response.status_code == 201, response.text
    version = response.json()["versions"][-1]
    assert version["format"] == file_format and version["modality"] == "image"
    assert version["num_samples"] == SAMPLES and version["class_names"] == CLASS_NAMES
    with sessions() as session:
        ids = session.scalars(select(Sample.sample_id).order_by(Sample.sample_index)).all()
    assert ids == [f"img-{i:03d}" for i in range(SAMPLES)]

    body = {"dataset_id": response.json()["id"], "epochs": 2, "batch_size": 32, "inject_noise": "uniform:0.2"}
    job_id = client.post("/jobs", json=body, headers=alice).raise_for_status().json()["id"]
    assert execute_job(sessions, job_id, settings) is JobStatus.SUCCEEDED
    suspects = client.get(f"/jobs/{job_id}/suspects", params={"limit": 5}, headers=alice).raise_for_status().json()
    assert len(suspects["items"]) == 5 and all(item["sample_id"].startswith("img-") for item in suspects["items"])


def test_a_parquet_image_without_bytes_is_422_and_stores_nothing(client, alice, dataset_rows):
    import pyarrow as pa

    table, _ = digits_png_table(10)
    images = pa.StructArray.from_arrays([pa.nulls(10, pa.binary()), pa.array(["x.png"] * 10)], names=["bytes", "path"])
    buffer = io.BytesIO()
    pq.write_table(table.set_column(0, "image", images), buffer)
    before = dataset_rows()
    response = client.post("/datasets", files={"file": ("bad.parquet", buffer.getvalue())}, headers=alice)
    assert response.status_code == 422 and "has no bytes" in response.json()["detail"]
    assert dataset_rows() == before
