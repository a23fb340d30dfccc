"""Uploads over the inline limit: answered 202 with the dataset ingesting and its ingest task
queued; the version takes no job and the dataset no other upload until the ingest has run, then
the dataset is ready, as an inline upload's is at once. A relabel of an ingested version writes
only labels: the new version shares the samples' shard and blob."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from core.services import ingest
from core.services.audit_runs import _load_version
from core.store import DatasetVersion, Sample, session_scope

ROWS = b"f1,f2,label\n" + b"".join(f"{i},{i % 7},{'ab'[i % 2]}\n".encode() for i in range(400))


@pytest.fixture
def small_inline_limit(settings):
    settings.inline_ingest_max_bytes = 1024
    return settings


def test_a_large_upload_is_ingested_by_its_task_and_takes_no_job_before(
    small_inline_limit, client, alice, sessions, take_queued_ingest
):
    settings = small_inline_limit
    response = client.post("/datasets", files={"file": ("rows.csv", ROWS)}, headers=alice)
    assert response.status_code == 202, response.text
    dataset = response.json()
    assert (dataset["status"], dataset["ingest_percent"]) == ("ingesting", 0)
    assert [(v["version"], v["status"], v["num_samples"]) for v in dataset["versions"]] == [(1, "ingesting", 0)]
    version_id = take_queued_ingest()

    refused = client.post("/jobs", json={"dataset_id": dataset["id"], "epochs": 1}, headers=alice)
    assert refused.status_code == 409
    assert "still being ingested" in refused.json()["detail"]
    again = client.post("/datasets", files={"file": ("rows.csv", ROWS + b"9,9,a\n")}, data={"name": "rows"}, headers=alice)
    assert again.status_code == 409 and "still ingesting version 1" in again.json()["detail"]

    assert ingest.run_ingest(sessions, version_id, settings) == "ready"
    shown = client.get(f"/datasets/{dataset['id']}", headers=alice).json()
    assert (shown["status"], shown["ingest_percent"], shown["ingest_error"]) == ("ready", 100, None)
    assert [(v["status"], v["num_samples"], v["format"]) for v in shown["versions"]] == [("ready", 400, "csv")]
    assert client.post("/jobs", json={"dataset_id": dataset["id"], "epochs": 1}, headers=alice).status_code == 201


def test_a_large_upload_that_cannot_be_read_fails_with_its_reason(
    small_inline_limit, client, alice, sessions, blob_files, take_queued_ingest
):
    settings = small_inline_limit
    bad = ROWS + b"1,oops,a\n"
    dataset = client.post("/datasets", files={"file": ("rows.csv", bad)}, headers=alice).json()
    version_id = take_queued_ingest()
    assert ingest.run_ingest(sessions, version_id, settings) == "failed"
    shown = client.get(f"/datasets/{dataset['id']}", headers=alice).json()
    assert shown["status"] == "failed" and shown["versions"] == []
    assert "rows.csv" in shown["ingest_error"] and "not numeric" in shown["ingest_error"]
    assert blob_files() == []
    # The name can be uploaded again, fixed, and small enough to be read at once.
    fixed = client.post("/datasets", files={"file": ("rows.csv", ROWS[:200].rsplit(b"\n", 1)[0] + b"\n")}, headers=alice)
    assert fixed.status_code == 201 and fixed.json()["status"] == "ready"
    assert [v["version"] for v in fixed.json()["versions"]] == [1]


def test_a_small_upload_is_still_ready_at_once(client, alice):
    response = client.post("/datasets", files={"file": ("rows.csv", ROWS)}, headers=alice)
    assert response.status_code == 201
    dataset = response.json()
    assert (dataset["status"], dataset["ingest_percent"], dataset["versions"][0]["status"]) == ("ready", 100, "ready")


def test_a_relabel_without_removals_writes_only_labels_and_the_worker_trains_on_them(client, alice, sessions, settings):
    rows = b"f1,f2,sample_id,label\n" + b"".join(f"{i},{i % 7},s{i},{'ab'[i % 2]}\n".encode() for i in range(40))
    dataset = client.post("/datasets", files={"file": ("rows.csv", rows)}, headers=alice).json()
    job = client.post("/jobs", json={"dataset_id": dataset["id"], "epochs": 1}, headers=alice).json()
    decided = client.post(f"/jobs/{job['id']}/decisions", json={"sample_index": 4, "verdict": "relabel", "label": "b"},
                          headers=alice)  # fmt: skip
    assert decided.status_code == 201, decided.text
    relabeled = client.post(f"/datasets/{dataset['id']}/versions/relabel", headers=alice)
    assert relabeled.status_code == 201, relabeled.text

    with session_scope(sessions) as session:
        first, second = session.scalars(
            select(DatasetVersion).where(DatasetVersion.dataset_id == dataset["id"]).order_by(DatasetVersion.version)
        ).all()
        assert second.samples_uri == first.samples_uri is not None
        assert second.blob_sha256 == first.blob_sha256  # no copy of the samples was written
        samples = session.execute(
            select(Sample.sample_id, Sample.label).where(Sample.dataset_version_id == second.id).order_by(Sample.sample_index)
        ).all()
    loaded = _load_version(settings, second, samples)
    assert loaded.class_names[loaded.y[4]] == "b" and loaded.sample_ids[4] == "s4"
    assert loaded.x.shape == (40, 2)
