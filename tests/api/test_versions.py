"""Growing a dataset over HTTP: appending samples as a new version (duplicates by content left out
and reported, ids kept stable, flags carried over), applying reviewers' relabels as a new
version, and the diff between versions; bad appends lose nothing."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from core.dataset import content_hashes
from core.loaders import load_dataset
from core.services.audit_runs import execute_job
from core.store import AuditJob, JobStatus, Sample, SampleScore, session_scope

NEW = 40
DUPLICATES = 5


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@pytest.fixture
def dataset_id(client, alice, digits_audit) -> int:
    response = client.post("/datasets", files={"file": ("digits.npz", digits_audit.npz)}, headers=alice)
    assert response.status_code == 201, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def growth(digits_audit) -> dict:
    """NEW digits the dataset does not hold (every 4th flagged mislabeled), plus DUPLICATES exact
    copies of samples it holds, under new ids."""
    held = digits_audit.result.dataset
    digits = load_dataset("digits")
    new = unseen(digits.x, held.x, NEW)
    flags = np.arange(NEW) % 4 == 0
    y = digits.y[new].copy()
    y[flags] = (y[flags] + 1) % 10
    return {
        "x": np.concatenate([digits.x[new], held.x[:DUPLICATES]]),
        "y": np.concatenate([y, held.y[:DUPLICATES]]),
        "flags": np.concatenate([flags, np.zeros(DUPLICATES, bool)]),
        "sample_ids": np.array([f"new-{i}" for i in range(NEW)] + [f"copy-{i}" for i in range(DUPLICATES)]),
    }


def unseen(x: np.ndarray, held: np.ndarray, count: int) -> np.ndarray:
    """Indexes of `count` images of `x` that are not in `held` nor copies of each other (the
    digits set holds a few exact copies of images)."""
    seen, picked = set(content_hashes(held)), []
    for index, digest in enumerate(content_hashes(x)):
        if digest not in seen and len(picked) < count:
            picked.append(index)
        seen.add(digest)
    return np.array(picked)


def append(client, headers, dataset_id: int, data: bytes, name: str = "more.npz"):
    return client.post(f"/datasets/{dataset_id}/versions/append", files={"file": (name, data)}, headers=headers)


def test_appending_adds_the_new_samples_and_reports_the_duplicates(
    client, alice, dataset_id, digits_audit, growth, sessions, settings
):
    response = append(client, alice, dataset_id, npz_bytes(**growth))
    assert response.status_code == 201, response.text
    body = response.json()
    original = digits_audit.result.dataset
    assert (body["version"], body["num_added"], body["num_duplicates"]) == (2, NEW, DUPLICATES)
    assert body["duplicates"][0] == {"sample_id": "copy-0", "duplicate_of": original.sample_ids[0]}

    versions = client.get(f"/datasets/{dataset_id}/versions", headers=alice).json()
    assert [(v["version"], v["parent_version"], v["num_samples"]) for v in versions] == [
        (1, None, len(original)),
        (2, 1, len(original) + NEW),
    ]
    assert versions[1]["change"]["kind"] == "append"

    diff = client.get(f"/datasets/{dataset_id}/versions/diff", params={"base": 1}, headers=alice).json()
    assert (diff["num_added"], diff["num_removed"], diff["num_relabeled"]) == (NEW, 0, 0)
    assert diff["added"][:2] == ["new-0", "new-1"]

    with session_scope(sessions) as session:
        rows = session.execute(
            select(Sample.sample_id, Sample.is_mislabeled, Sample.content_hash)
            .join(Sample.dataset_version)
            .where(Sample.dataset_version.has(version=2), Sample.dataset_version.has(dataset_id=dataset_id))
            .order_by(Sample.sample_index)
        ).all()
    assert [row.sample_id for row in rows] == original.sample_ids + [f"new-{i}" for i in range(NEW)]
    flags = [row.is_mislabeled for row in rows]
    assert flags == original.is_mislabeled.tolist() + growth["flags"][:NEW].tolist()
    added = growth["x"][:NEW].astype(original.x.dtype)
    assert [row.content_hash for row in rows] == content_hashes(original.x) + content_hashes(added)

    # The worker audits the new version from its stored snapshot.
    job_id = client.post("/jobs", json={"dataset_id": dataset_id, "epochs": 1}, headers=alice).json()["id"]
    assert execute_job(sessions, job_id, settings) is JobStatus.SUCCEEDED
    with session_scope(sessions) as session:
        scored = session.scalar(select(SampleScore.sample_index).where(SampleScore.job_id == job_id).order_by(
            SampleScore.sample_index.desc()).limit(1))
        assert scored == len(original) + NEW - 1
        assert session.get(AuditJob, job_id, options=[joinedload(AuditJob.dataset_version)]).dataset_version.version == 2


def test_duplicates_are_found_in_a_version_stored_without_content_hashes(client, alice, dataset_id, growth, sessions):
    with session_scope(sessions) as session:
        stored = Sample.dataset_version.has(dataset_id=dataset_id)
        session.execute(update(Sample).where(stored).values(content_hash=None))

    body = append(client, alice, dataset_id, npz_bytes(**growth)).json()
    assert (body["num_added"], body["num_duplicates"]) == (NEW, DUPLICATES)


def test_appending_nothing_new_is_a_conflict_and_changes_nothing(
    client, alice, dataset_id, growth, dataset_rows, blob_files
):
    assert append(client, alice, dataset_id, npz_bytes(**growth)).status_code == 201
    rows, files = dataset_rows(), blob_files()

    again = append(client, alice, dataset_id, npz_bytes(**growth))
    assert again.status_code == 409
    assert f"all {NEW + DUPLICATES} samples are already in the dataset" in again.json()["detail"]
    assert (dataset_rows(), blob_files()) == (rows, files)


def test_a_new_sample_may_not_take_the_id_of_another(client, alice, dataset_id, digits_audit, growth, dataset_rows):
    taken = digits_audit.result.dataset.sample_ids[7]
    clashing = {**growth, "sample_ids": np.array([taken] + list(growth["sample_ids"][1:]))}
    rows = dataset_rows()

    response = append(client, alice, dataset_id, npz_bytes(**clashing))
    assert response.status_code == 422
    assert repr(taken) in response.json()["detail"] and "other content" in response.json()["detail"]
    assert dataset_rows() == rows


def test_samples_of_another_kind_are_refused(client, alice, dataset_id, dataset_rows):
    table = b"f1,f2,label\n0.1,0.2,a\n0.3,0.4,b\n"
    rows = dataset_rows()
    response = append(client, alice, dataset_id, table, name="rows.csv")
    assert response.status_code == 422
    assert "image" in response.json()["detail"] and "tabular" in response.json()["detail"]
    assert dataset_rows() == rows


@pytest.mark.parametrize(
    ("name", "data"),
    [("rows.csv", b"f1,f2,label\n0.1,0.2,a\n0.3,0.4,b\n"), ("broken.npz", b"PK\x03\x04 not really an npz")],
)
def test_a_refused_append_names_the_uploaded_file_not_the_stored_blob(client, alice, settings, dataset_id, name, data):
    response = append(client, alice, dataset_id, data, name=name)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert name in detail
    for internal in (hashlib.sha256(data).hexdigest(), str(settings.data_dir), "blobs/"):
        assert internal not in detail


def test_new_classes_come_after_the_existing_ones(client, alice, dataset_id, digits_audit, growth):
    labels = np.array([str(label) for label in growth["y"][:NEW]], dtype=object)
    labels[:3] = "unsure"
    data = npz_bytes(x=growth["x"][:NEW], y=labels.astype(str), sample_ids=growth["sample_ids"][:NEW])

    body = append(client, alice, dataset_id, data).json()
    assert body["new_classes"] == ["unsure"]
    names = body["dataset"]["versions"][-1]["class_names"]
    assert names == digits_audit.result.dataset.class_names + ["unsure"]
    diff = client.get(f"/datasets/{dataset_id}/versions/diff", params={"base": 1}, headers=alice).json()
    assert diff["num_relabeled"] == 0


def test_agreed_relabels_and_removals_become_a_new_version(client, alice, finished_job, sessions):
    dataset = finished_job.audit.result.dataset
    relabeled, removed, kept = 3, 5, 8
    new_label = dataset.class_names[(int(dataset.y[relabeled]) + 1) % dataset.num_classes]
    for sample_index, verdict, label in ((relabeled, "relabel", new_label), (removed, "remove", None), (kept, "keep", None)):
        body = {"sample_index": sample_index, "verdict": verdict, "label": label}
        assert client.post(f"/jobs/{finished_job.job_id}/decisions", json=body, headers=alice).status_code == 201

    response = client.post(f"/datasets/{finished_job.dataset_id}/versions/relabel", headers=alice)
    assert response.status_code == 201, response.text
    version = response.json()
    assert (version["version"], version["num_samples"]) == (2, len(dataset) - 1)
    assert version["change"] == {"kind": "relabel", "num_relabeled": 1, "num_removed": 1, "num_conflicts": 0}

    diff = client.get(f"/datasets/{finished_job.dataset_id}/versions/diff", params={"base": 1}, headers=alice).json()
    assert diff["relabeled"] == [
        {"sample_id": dataset.sample_ids[relabeled], "old_label": dataset.class_names[dataset.y[relabeled]],
         "new_label": new_label}
    ]  # fmt: skip
    assert diff["removed"] == [dataset.sample_ids[removed]]
    with session_scope(sessions) as session:
        flag = session.scalar(
            select(Sample.is_mislabeled)
            .where(Sample.sample_id == dataset.sample_ids[relabeled])
            .where(Sample.dataset_version.has(version=2))
        )
    assert flag is False

    again = client.post(f"/datasets/{finished_job.dataset_id}/versions/relabel", headers=alice)
    assert again.status_code == 409
