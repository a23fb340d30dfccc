"""Appends and relabels write only what changed, on SQLite and Postgres: a large append is read by
its ingest task into a shard of only the added rows and the new version refers to its parent's
shard, unchanged; an audit of it trains on parent and added rows with their labels; a relabel
with removals writes no shard; a failed append, inline or by the task, stores nothing and leaves
the parent ready; a version past `max_version_segments` is compacted into one shard; the orphan
sweep keeps every shard a version's segments refer to; a built-in's samples are written into a
shard once, when it is first appended to; the light client waits for a large append as for a
large upload."""

from __future__ import annotations

import hashlib
import io
import os
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from api.client import LilawAPIError, LilawClient
from core.engine import Inputs
from core.loaders import load_dataset
from core.services import audit_runs, ingest
from core.services.blobs import BlobStore
from core.store import AuditJob, DatasetVersion, JobStatus, Sample, SampleScore, session_scope

SMALL_LIMIT = 1024  # bytes: every append below is larger, so read by the ingest task


def rows_csv(indexes, label=lambda i: "abc"[i % 3], sample_id=lambda i: f"s{i}") -> bytes:
    """Rows i of features (i, i % 7): the same i is the same content, whatever its id."""
    lines = [b"f1,f2,sample_id,label\n"]
    lines += [f"{i},{i % 7},{sample_id(i)},{label(i)}\n".encode() for i in indexes]
    return b"".join(lines)


def upload(client, headers, data: bytes, name: str = "rows.csv") -> dict:
    response = client.post("/datasets", files={"file": (name, data)}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def append(client, headers, dataset_id: int, data: bytes, name: str = "more.csv"):
    return client.post(f"/datasets/{dataset_id}/versions/append", files={"file": (name, data)}, headers=headers)


def version_row(sessions, dataset_id: int, number: int) -> DatasetVersion:
    with session_scope(sessions) as session:
        version = session.scalar(
            select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id, DatasetVersion.version == number)
        )
        session.expunge(version)
        return version


def loaded_version(sessions, settings, version: DatasetVersion):
    with session_scope(sessions) as session:
        samples = session.execute(
            select(Sample.sample_id, Sample.label)
            .where(Sample.dataset_version_id == version.id)
            .order_by(Sample.sample_index)
        ).all()
    return audit_runs._load_version(settings, version, samples)


def audit(client, headers, sessions, settings, dataset_id: int, version: int | None = None) -> list[tuple]:
    body = {"dataset_id": dataset_id, "epochs": 1, "model": "mlp"} | ({"version": version} if version else {})
    created = client.post("/jobs", json=body, headers=headers)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert audit_runs.execute_job(sessions, job_id, settings) is JobStatus.SUCCEEDED
    with session_scope(sessions) as session:
        assert session.get(AuditJob, job_id).status is JobStatus.SUCCEEDED
        return [tuple(row) for row in session.execute(
            select(SampleScore.sample_index, SampleScore.rank, SampleScore.default_score)
            .where(SampleScore.job_id == job_id).order_by(SampleScore.sample_index)
        ).all()]  # fmt: skip


def shard_files(settings) -> list[str]:
    return sorted(path.name for path in settings.sample_dir.glob("*")) if settings.sample_dir.is_dir() else []


def file_sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_large_append_is_ingested_into_a_shard_of_only_the_added_rows(
    client, alice, sessions, settings, monkeypatch, take_queued_ingest
):
    dataset = upload(client, alice, rows_csv(range(300)))
    first = version_row(sessions, dataset["id"], 1)
    parent_shard = settings.data_dir / first.samples_uri
    parent_digest = file_sha256(parent_shard)
    settings.inline_ingest_max_bytes = SMALL_LIMIT
    # 200 new rows (one of a new class), and 20 copies of rows the dataset holds, under new ids.
    added = rows_csv(range(300, 500), label=lambda i: "d" if i == 499 else "abc"[i % 3])
    copies = rows_csv(range(20), sample_id=lambda i: f"copy-{i}").split(b"\n", 1)[1]
    response = append(client, alice, dataset["id"], added + copies)
    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["dataset"]["status"], body["dataset"]["ingest_percent"], body["version"]) == ("ingesting", 0, 2)
    assert (body["num_added"], body["num_duplicates"]) == (None, None)

    assert ingest.run_ingest(sessions, take_queued_ingest(), settings) == "ready"
    shown = client.get(f"/datasets/{dataset['id']}", headers=alice).json()
    assert (shown["status"], shown["ingest_percent"], shown["ingest_error"]) == ("ready", 100, None)
    change = shown["versions"][1]["change"]
    assert (change["num_added"], change["num_duplicates"], change["new_classes"]) == (200, 20, ["d"])
    assert change["duplicates"][0] == {"sample_id": "copy-0", "duplicate_of": "s0"}

    second = version_row(sessions, dataset["id"], 2)
    [kept, new] = second.sample_segments
    assert kept == {"shard": first.samples_uri, "start": 0, "stop": 300}  # the parent's shard, referred to
    assert file_sha256(parent_shard) == parent_digest  # unchanged
    added_rows = np.load(settings.data_dir / new["shard"])
    assert (new["start"], new["stop"], added_rows.shape) == (0, 200, (200, 2))  # only the added rows
    np.testing.assert_array_equal(added_rows, np.array([(i, i % 7) for i in range(300, 500)], dtype=np.float32))

    loaded = loaded_version(sessions, settings, second)
    assert len(loaded) == 500 and loaded.sample_ids == [f"s{i}" for i in range(500)]
    np.testing.assert_array_equal(np.asarray(loaded.x), np.array([(i, i % 7) for i in range(500)], dtype=np.float32))
    labels = [loaded.class_names[label] for label in loaded.y]
    assert labels == ["abc"[i % 3] for i in range(499)] + ["d"]

    # The audit trains on the parent's and the added rows, streamed from the shards, with the
    # results it has with them in memory.
    monkeypatch.setattr(Inputs, "stream_above_bytes", 0)
    streamed = audit(client, alice, sessions, settings, dataset["id"])
    monkeypatch.setattr(Inputs, "stream_above_bytes", 1 << 40)
    assert len(streamed) == 500 and streamed == audit(client, alice, sessions, settings, dataset["id"])


def test_a_relabel_with_removals_writes_no_shard_and_its_audit_sees_the_kept_rows(client, alice, sessions, settings):
    dataset = upload(client, alice, rows_csv(range(120)))
    job = client.post("/jobs", json={"dataset_id": dataset["id"], "epochs": 1}, headers=alice).json()
    for body in ({"sample_index": 5, "verdict": "remove"}, {"sample_index": 60, "verdict": "remove"},
                 {"sample_index": 7, "verdict": "relabel", "label": "c"}):  # fmt: skip
        assert client.post(f"/jobs/{job['id']}/decisions", json=body, headers=alice).status_code == 201
    shards = shard_files(settings)

    relabeled = client.post(f"/datasets/{dataset['id']}/versions/relabel", headers=alice)
    assert relabeled.status_code == 201, relabeled.text
    assert relabeled.json()["num_samples"] == 118
    assert shard_files(settings) == shards  # no copy of the samples
    first, second = version_row(sessions, dataset["id"], 1), version_row(sessions, dataset["id"], 2)
    shard = first.samples_uri
    assert second.sample_segments == [
        {"shard": shard, "start": 0, "stop": 5}, {"shard": shard, "start": 6, "stop": 60},
        {"shard": shard, "start": 61, "stop": 120},
    ]  # fmt: skip
    kept = [i for i in range(120) if i not in (5, 60)]
    loaded = loaded_version(sessions, settings, second)
    assert loaded.sample_ids == [f"s{i}" for i in kept]
    np.testing.assert_array_equal(np.asarray(loaded.x), np.array([(i, i % 7) for i in kept], dtype=np.float32))
    assert [loaded.class_names[label] for label in loaded.y] == ["c" if i == 7 else "abc"[i % 3] for i in kept]
    assert len(audit(client, alice, sessions, settings, dataset["id"])) == 118

    # It downloads with its rows and labels, and an append to it refers to its segments.
    downloaded = client.get(f"/datasets/{dataset['id']}/versions/2/download", params={"format": "npz"}, headers=alice)
    assert downloaded.status_code == 200, downloaded.text
    with np.load(io.BytesIO(downloaded.content)) as arrays:
        np.testing.assert_array_equal(arrays["x"], np.asarray(loaded.x))
        assert [str(i) for i in arrays["sample_ids"]] == loaded.sample_ids
    assert append(client, alice, dataset["id"], rows_csv(range(500, 510))).status_code == 201
    third = version_row(sessions, dataset["id"], 3)
    assert third.sample_segments[:3] == second.sample_segments and third.num_samples == 128


def test_a_version_past_the_segment_limit_is_compacted_into_one_shard(client, alice, sessions, settings):
    """Three removals split the parent's shard in four segments, one more than allowed: the rows
    are copied into one new shard instead, the parent's left as it was; an append then refers to
    the compacted shard."""
    settings.max_version_segments = 3
    dataset = upload(client, alice, rows_csv(range(120)))
    first = version_row(sessions, dataset["id"], 1)
    parent_digest = file_sha256(settings.data_dir / first.samples_uri)
    job = client.post("/jobs", json={"dataset_id": dataset["id"], "epochs": 1}, headers=alice).json()
    for index in (5, 60, 90):
        body = {"sample_index": index, "verdict": "remove"}
        assert client.post(f"/jobs/{job['id']}/decisions", json=body, headers=alice).status_code == 201

    relabeled = client.post(f"/datasets/{dataset['id']}/versions/relabel", headers=alice)

    assert relabeled.status_code == 201, relabeled.text
    second = version_row(sessions, dataset["id"], 2)
    [segment] = second.sample_segments
    assert segment["shard"] != first.samples_uri and (segment["start"], segment["stop"]) == (0, 117)
    kept = [i for i in range(120) if i not in (5, 60, 90)]
    expected = np.array([(i, i % 7) for i in kept], dtype=np.float32)
    np.testing.assert_array_equal(np.load(settings.data_dir / segment["shard"]), expected)
    assert file_sha256(settings.data_dir / first.samples_uri) == parent_digest
    loaded = loaded_version(sessions, settings, second)
    assert loaded.sample_ids == [f"s{i}" for i in kept]
    np.testing.assert_array_equal(np.asarray(loaded.x), expected)
    assert len(audit(client, alice, sessions, settings, dataset["id"])) == 117
    assert append(client, alice, dataset["id"], rows_csv(range(500, 510))).status_code == 201
    assert version_row(sessions, dataset["id"], 3).sample_segments[0] == segment


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"f1,f2,sample_id,label\n" + b"1,oops,x,a\n" * 200, "not numeric", id="unreadable"),
        pytest.param(
            b"f1,f2,f3,label\n" + b"".join(f"{i},1,2,{'ab'[i % 2]}\n".encode() for i in range(300)),
            "shape",
            id="another-shape",
        ),
        pytest.param(rows_csv(range(400, 600)).replace(b",s400,", b",s3,"), "other content", id="a-taken-id"),
        pytest.param(rows_csv(range(100), sample_id=lambda i: f"again-{i}"), "nothing to append", id="nothing-new"),
    ],
)
def test_a_failed_large_append_stores_nothing_and_leaves_the_parent_ready(
    client, alice, sessions, settings, blob_files, dataset_rows, data, reason, take_queued_ingest
):
    dataset = upload(client, alice, rows_csv(range(100)))
    rows, shards, blobs = dataset_rows(), shard_files(settings), blob_files()
    settings.inline_ingest_max_bytes = SMALL_LIMIT
    assert append(client, alice, dataset["id"], data).status_code == 202

    assert ingest.run_ingest(sessions, take_queued_ingest(), settings) == "failed"
    shown = client.get(f"/datasets/{dataset['id']}", headers=alice).json()
    assert shown["status"] == "failed" and reason in shown["ingest_error"] and "more.csv" in shown["ingest_error"]
    assert [(v["version"], v["status"]) for v in shown["versions"]] == [(1, "ready")]
    assert (dataset_rows(), shard_files(settings), blob_files()) == (rows, shards, blobs)
    assert len(audit(client, alice, sessions, settings, dataset["id"])) == 100


def test_a_failed_inline_append_stores_nothing(client, alice, sessions, settings, blob_files, dataset_rows):
    dataset = upload(client, alice, rows_csv(range(100)))
    rows, shards, blobs = dataset_rows(), shard_files(settings), blob_files()
    again = append(client, alice, dataset["id"], rows_csv(range(100), sample_id=lambda i: f"again-{i}"))
    assert again.status_code == 409 and "all 100 samples are already in the dataset" in again.json()["detail"]
    clash = append(client, alice, dataset["id"], rows_csv(range(200, 210)).replace(b",s200,", b",s1,"))
    assert clash.status_code == 422 and "other content" in clash.json()["detail"]
    assert (dataset_rows(), shard_files(settings), blob_files()) == (rows, shards, blobs)


def test_the_sweep_keeps_every_shard_that_a_version_refers_to(client, alice, sessions, settings):
    dataset = upload(client, alice, rows_csv(range(100)))
    assert append(client, alice, dataset["id"], rows_csv(range(100, 150))).status_code == 201
    job = client.post("/jobs", json={"dataset_id": dataset["id"], "epochs": 1}, headers=alice).json()
    assert client.post(f"/jobs/{job['id']}/decisions", json={"sample_index": 120, "verdict": "remove"},
                       headers=alice).status_code == 201  # fmt: skip
    assert client.post(f"/datasets/{dataset['id']}/versions/relabel", headers=alice).status_code == 201
    # Only version 1 refers to its shard through samples_uri; versions 2 and 3 through segments.
    versions = [version_row(sessions, dataset["id"], number) for number in (2, 3)]
    referred = {segment["shard"] for version in versions for segment in version.sample_segments}
    assert len(referred) == 2
    orphan = settings.sample_dir / "0123456789abcdef0123456789abcdef.npy"
    np.save(orphan, np.zeros((2, 2), dtype=np.float32))
    for path in settings.sample_dir.glob("*"):
        os.utime(path, (0, 0))
    with sessions() as session:
        report = BlobStore(settings).sweep_orphans(session, grace=timedelta(hours=1))
    assert report.shards == [orphan.name]
    assert all((settings.data_dir / uri).is_file() for uri in referred)
    assert len(audit(client, alice, sessions, settings, dataset["id"])) == 149


def test_a_builtin_is_written_into_a_shard_once_when_first_appended_to(client, alice, sessions, settings):
    created = client.post("/datasets", json={"builtin": "digits", "name": "digits"}, headers=alice)
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    digits = load_dataset("digits")
    inverted = (16 - digits.x[:30]).astype(np.uint8)  # new content, the digits' 8x8 shape
    buffer = io.BytesIO()
    np.savez(buffer, x=inverted, y=digits.y[:30], sample_ids=np.array([f"inv-{i}" for i in range(30)]))
    body = append(client, alice, dataset_id, buffer.getvalue(), name="inverted.npz").json()
    assert body["num_added"] == 30 - body["num_duplicates"] > 0
    second = version_row(sessions, dataset_id, 2)
    [parent, _] = second.sample_segments
    assert (parent["start"], parent["stop"]) == (0, len(digits))
    np.testing.assert_array_equal(np.load(settings.data_dir / parent["shard"]), digits.x)
    assert version_row(sessions, dataset_id, 1).samples_uri is None  # the built-in's row is left as it was

    buffer = io.BytesIO()
    flat = np.stack([np.full((1, 8, 8), 3, np.uint8), np.full((1, 8, 8), 5, np.uint8)])
    np.savez(buffer, x=flat, y=np.array([1, 2]), sample_ids=np.array(["flat-3", "flat-5"]))
    assert append(client, alice, dataset_id, buffer.getvalue(), name="flat.npz").status_code == 201
    third = version_row(sessions, dataset_id, 3)
    assert third.sample_segments[:2] == second.sample_segments  # not written again
    loaded = loaded_version(sessions, settings, third)
    assert len(loaded) == third.num_samples and loaded.sample_ids[-2:] == ["flat-3", "flat-5"]
    np.testing.assert_array_equal(loaded.x[: len(digits)], digits.x)


def test_the_light_client_waits_for_a_large_append(client, alice, sessions, settings, take_queued_ingest):
    lilaw = LilawClient("http://testserver", alice["Authorization"].removeprefix("Bearer "), http=client)
    dataset = upload(client, alice, rows_csv(range(100)))
    settings.inline_ingest_max_bytes = SMALL_LIMIT
    seen = []

    def ingest_when_polled(state) -> None:  # the worker, run when the client first sees the ingest
        seen.append((state.status, state.ingest_percent))
        if state.status == "ingesting":
            ingest.run_ingest(sessions, take_queued_ingest(), settings)

    more = _file(settings, rows_csv(range(100, 300)))
    appended = lilaw.append_samples(dataset["id"], more, on_progress=ingest_when_polled, poll_seconds=0.01)
    assert (appended.version, appended.num_added, appended.num_duplicates) == (2, 200, 0)
    assert appended.dataset.status == "ready" and seen == [("ingesting", 0), ("ready", 100)]

    with pytest.raises(LilawAPIError) as failed:
        lilaw.append_samples(dataset["id"], _file(settings, rows_csv(range(300))), on_progress=ingest_when_polled)
    assert failed.value.status_code == 422 and failed.value.detail.startswith("more-")
    assert "nothing to append: all 300 samples are already in the dataset" in failed.value.detail


def _file(settings, data: bytes):
    path = settings.data_dir.parent / f"more-{hashlib.sha256(data).hexdigest()[:8]}.csv"
    path.write_bytes(data)
    return path
