"""The ingest of a large upload as the ingest task runs it (`core.services.ingest.run_ingest`), on
SQLite and Postgres: the version becomes ready with its sample rows, the percent grows on the way,
and a file that cannot be read leaves no version, no sample row, no blob and no shard, only the
reason; an audit of the version streams its shard with the results it has from memory."""

from __future__ import annotations

import io
import os
import uuid
import zipfile
from datetime import timedelta

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import event, func, select
from sqlalchemy.orm import joinedload

from core.loaders import load_dataset
from core.engine import Inputs
from core.services import ConflictError, audit_runs, datasets, ingest, jobs
from core.services.blobs import Blob, BlobStore
from core.audit import AuditConfig
from core.store import AuditJob, Dataset, DatasetVersion, JobStatus, Owner, Sample, SampleScore, session_scope


def _digits_zip(count: int) -> bytes:
    digits = load_dataset("digits", limit=count)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for index, (pixels, label) in enumerate(zip(digits.x, digits.y)):
            png = io.BytesIO()
            Image.fromarray(pixels[0]).save(png, format="PNG")
            archive.writestr(f"{digits.class_names[label]}/{index}.png", png.getvalue())
    return buffer.getvalue()


def _stored_blob(settings, filename: str, data: bytes) -> Blob:
    writer = BlobStore(settings).writer(filename)
    writer.write(data)
    return writer.finish()


def _start(sessions, settings, filename: str, data: bytes) -> tuple[int, int, Blob]:
    blob = _stored_blob(settings, filename, data)
    with session_scope(sessions) as session:
        owner = Owner(name=f"owner-{uuid.uuid4().hex[:8]}")
        session.add(owner)
        session.flush()
        dataset = ingest.start_ingest(session, owner.id, "uploaded", blob, modality=None)
        return owner.id, ingest.ingesting_version_id(dataset), blob


def test_an_ingest_makes_the_version_ready_with_its_samples_and_the_percent_grows(sessions, settings, monkeypatch):
    monkeypatch.setattr(ingest, "PROGRESS_INTERVAL_S", 0.0)
    monkeypatch.setattr(datasets, "SAMPLE_INSERT_CHUNK", 256)  # the sample rows go in 3 chunks
    owner_id, version_id, blob = _start(sessions, settings, "digits.zip", _digits_zip(600))
    with session_scope(sessions) as session:
        version = session.get(DatasetVersion, version_id, options=[joinedload(DatasetVersion.dataset)])
        assert (version.status, version.dataset.status, version.dataset.ingest_percent) == ("ingesting", "ingesting", 0)
        with pytest.raises(ConflictError, match="still being ingested"):
            jobs.create_job(session, owner_id, version.dataset_id, None, AuditConfig(epochs=1))

    percents: list[int] = []

    def seen(_connection, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("UPDATE DATASETS SET INGEST_PERCENT"):
            values = list(parameters.values() if isinstance(parameters, dict) else parameters)
            percents.append(values[0])  # SET ingest_percent = first, then the WHERE's values

    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", seen)
    try:
        assert ingest.run_ingest(sessions, version_id, settings) == "ready"
    finally:
        event.remove(engine, "before_cursor_execute", seen)

    assert len(percents) >= 3 and percents == sorted(percents) and 0 < percents[0] and percents[-1] < 100
    with session_scope(sessions) as session:
        version = session.get(DatasetVersion, version_id, options=[joinedload(DatasetVersion.dataset)])
        assert (version.status, version.num_samples, version.format) == ("ready", 600, "imagefolder")
        assert version.class_names == [str(digit) for digit in range(10)]
        dataset = version.dataset
        assert (dataset.status, dataset.ingest_percent, dataset.ingest_error) == ("ready", 100, None)
        labels = session.scalars(
            select(Sample.label).where(Sample.dataset_version_id == version_id).order_by(Sample.sample_index)
        ).all()
        assert len(labels) == 600 and sorted(set(labels)) == list(range(10))
        indexes = session.scalars(select(Sample.sample_index).where(Sample.dataset_version_id == version_id)).all()
        assert sorted(indexes) == list(range(600))
        job = jobs.create_job(session, owner_id, version.dataset_id, None, AuditConfig(epochs=1))
        assert job.dataset_version_id == version_id
    assert blob.path.exists() and (settings.data_dir / version.samples_uri).is_file()
    assert ingest.run_ingest(sessions, version_id, settings) == "ready"  # a redelivered task changes nothing


def test_a_failed_ingest_leaves_no_version_no_samples_and_no_blob_but_the_reason(sessions, settings):
    broken = _digits_zip(50)[:-300]  # cut off: the zip's central directory is gone
    owner_id, version_id, blob = _start(sessions, settings, "cut.zip", broken + b"\0" * 100)
    assert ingest.run_ingest(sessions, version_id, settings) == "failed"
    with session_scope(sessions) as session:
        dataset = session.scalar(select(Dataset).where(Dataset.owner_id == owner_id))
        assert dataset.status == "failed"
        assert "cut.zip" in dataset.ingest_error and blob.sha256 not in dataset.ingest_error
        assert session.scalar(select(func.count()).select_from(DatasetVersion).where(DatasetVersion.id == version_id)) == 0
        assert session.scalar(select(func.count()).select_from(Sample).where(Sample.dataset_version_id == version_id)) == 0
    assert not blob.path.exists()
    assert not settings.sample_dir.exists() or list(settings.sample_dir.iterdir()) == []
    assert ingest.run_ingest(sessions, version_id, settings) is None


def test_an_upload_is_refused_while_another_of_the_dataset_is_ingesting(sessions, settings):
    owner_id, version_id, _ = _start(sessions, settings, "digits.zip", _digits_zip(40))
    other = _stored_blob(settings, "more.npz", _npz_bytes())
    with session_scope(sessions) as session, pytest.raises(ConflictError, match="still ingesting version 1"):
        ingest.start_ingest(session, owner_id, "uploaded", other, modality=None)
    assert ingest.run_ingest(sessions, version_id, settings) == "ready"
    with session_scope(sessions) as session:
        dataset = ingest.start_ingest(session, owner_id, "uploaded", other, modality=None)
        assert [version.version for version in dataset.versions] == [1, 2]


def _npz_bytes() -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.arange(40, dtype=np.float32).reshape(20, 2), y=np.arange(20) % 2)
    return buffer.getvalue()


def test_an_audit_of_an_ingested_version_streams_its_shard_with_the_results_of_memory(sessions, settings, monkeypatch):
    owner_id, version_id, _ = _start(sessions, settings, "digits.zip", _digits_zip(300))
    assert ingest.run_ingest(sessions, version_id, settings) == "ready"

    def audited(stream_above_bytes: int) -> list[tuple[int, int, float]]:
        monkeypatch.setattr(Inputs, "stream_above_bytes", stream_above_bytes)
        with session_scope(sessions) as session:
            dataset_id = session.get(DatasetVersion, version_id).dataset_id
            job_id = jobs.create_job(session, owner_id, dataset_id, None, AuditConfig(epochs=2, batch_size=64)).id
        assert audit_runs.execute_job(sessions, job_id, settings) is JobStatus.SUCCEEDED
        with session_scope(sessions) as session:
            assert session.get(AuditJob, job_id).result["num_samples"] == 300
            rows = session.execute(
                select(SampleScore.sample_index, SampleScore.rank, SampleScore.default_score)
                .where(SampleScore.job_id == job_id).order_by(SampleScore.sample_index)
            ).all()
        return [tuple(row) for row in rows]

    streamed, resident = audited(0), audited(1 << 40)
    assert len(streamed) == 300 and streamed == resident


def test_the_sweep_removes_shards_no_version_refers_to(sessions, settings):
    _, version_id, _ = _start(sessions, settings, "digits.zip", _digits_zip(40))
    assert ingest.run_ingest(sessions, version_id, settings) == "ready"
    with session_scope(sessions) as session:
        kept = settings.data_dir / session.get(DatasetVersion, version_id).samples_uri
    orphan = settings.sample_dir / "0123456789abcdef0123456789abcdef.npy"  # a killed ingest's
    np.save(orphan, np.zeros((2, 3), dtype=np.float32))
    for path in (kept, orphan):
        os.utime(path, (0, 0))
    with sessions() as session:
        report = BlobStore(settings).sweep_orphans(session, grace=timedelta(hours=1))
    assert report.shards == [orphan.name]
    assert kept.exists() and not orphan.exists()
