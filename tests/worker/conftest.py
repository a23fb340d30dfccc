"""Real databases (a SQLite file, a fresh Postgres database: tests/conftest.py's `make_database`)
migrated to head, a digits subset stored as a dataset version, and jobs over it: what
`execute_job` needs, without a broker."""

from __future__ import annotations

import io
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from core.audit import AuditConfig
from core.dataset import AuditDataset
from core.loaders import load_dataset
from core.services import ingest
from core.services.blobs import Blob, BlobStore
from core.settings import Settings
from core.store import (
    AuditJob,
    Dataset,
    DatasetVersion,
    Owner,
    Sample,
    make_engine,
    make_session_factory,
    session_scope,
)
from migrations import upgrade_database

NUM_SAMPLES = 300


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, make_database: Callable[[str], str]) -> str:
    """A new database of each backend, migrated to head, shared by the session."""
    url = make_database(request.param)
    upgrade_database(url)
    return url


@pytest.fixture(scope="session")
def db_engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url, sqlite_begin="IMMEDIATE")
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(db_engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(db_engine)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The service's settings, with a heartbeat timeout and a resend delay longer than the
    session: jobs and ingests that earlier tests leave running or queued in the shared database
    never go stale under later tests' reapers (tests make one stale by dating it back)."""
    return Settings(data_dir=tmp_path / "data", heartbeat_timeout_s=3600, resend_waiting_after_s=3600)


@pytest.fixture(scope="session")
def digits() -> AuditDataset:
    return load_dataset("digits", limit=NUM_SAMPLES)


@pytest.fixture(scope="session")
def n(digits: AuditDataset) -> int:
    """The number of samples of every job's dataset."""
    return len(digits)


@pytest.fixture(scope="session")
def digits_blob(digits: AuditDataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("blobs") / "digits.npz"
    np.savez(path, x=digits.x, y=digits.y, sample_ids=np.array(digits.sample_ids))
    return path


@pytest.fixture
def make_job(sessions: sessionmaker[Session], digits: AuditDataset, digits_blob: Path) -> Callable[..., int]:
    """Creates a queued job over a new version of the digits subset; returns its id."""

    def make(blob_uri: str | None = None, config: dict | None = None, **options) -> int:
        with session_scope(sessions) as session:
            owner = Owner(name=f"owner-{uuid.uuid4().hex[:8]}")
            version = DatasetVersion(
                dataset=Dataset(owner=owner, name="digits"), version=1, blob_sha256="0" * 64,
                blob_uri=blob_uri or str(digits_blob), format="npz", modality="image",
                num_samples=len(digits), num_classes=digits.num_classes, class_names=digits.class_names,
            )
            job_config = config or AuditConfig(**{"epochs": 3, "batch_size": 64, **options}).to_dict()
            job = AuditJob(owner=owner, dataset_version=version, config=job_config)
            session.add(job)
            session.flush()
            session.execute(
                Sample.__table__.insert(),
                [
                    {"dataset_version_id": version.id, "sample_index": i, "sample_id": sample_id, "label": int(label)}
                    for i, (sample_id, label) in enumerate(zip(digits.sample_ids, digits.y))
                ],
            )
            return job.id

    return make


@pytest.fixture
def add_version(sessions: sessionmaker[Session]) -> Callable[[int], int]:
    """Adds a copy of a dataset's latest version as its next version (what an append stores,
    without new samples); returns the new version number."""

    def add(dataset_id: int) -> int:
        with session_scope(sessions) as session:
            latest = session.scalar(
                select(DatasetVersion).where(DatasetVersion.dataset_id == dataset_id).order_by(DatasetVersion.version.desc())
            )
            version = DatasetVersion(
                dataset_id=dataset_id, version=latest.version + 1, parent_version=latest.version,
                blob_sha256=latest.blob_sha256, blob_uri=latest.blob_uri, format=latest.format, modality=latest.modality,
                num_samples=latest.num_samples, num_classes=latest.num_classes, class_names=latest.class_names,
            )  # fmt: skip
            session.add(version)
            session.flush()
            samples = session.execute(select(Sample.sample_index, Sample.sample_id, Sample.label).where(
                Sample.dataset_version_id == latest.id)).all()
            session.execute(
                Sample.__table__.insert(),
                [{"dataset_version_id": version.id, "sample_index": i, "sample_id": s, "label": y} for i, s, y in samples],
            )
            return version.version

    return add


@pytest.fixture(scope="session")
def digits_pngs() -> list[tuple[str, bytes]]:
    """Digits as the members of a zip of class folders, for the ingest tests' uploads."""
    digits = load_dataset("digits", limit=120)
    members = []
    for index, (pixels, label) in enumerate(zip(digits.x, digits.y)):
        png = io.BytesIO()
        Image.fromarray(pixels[0]).save(png, format="PNG")
        members.append((f"{digits.class_names[label]}/{index}.png", png.getvalue()))
    return members


def _unique_zip(members: list[tuple[str, bytes]]) -> bytes:
    """The members zipped with a unique comment: a blob no other test's version shares."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.comment = uuid.uuid4().hex.encode()
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def start_upload(sessions, settings, digits_pngs):
    """An upload of the digits zip as an ingesting version, as the API leaves it before queueing
    its task; returns the version id, the blob and the dataset id."""

    def start() -> tuple[int, Blob, int]:
        writer = BlobStore(settings).writer("digits.zip")
        writer.write(_unique_zip(digits_pngs))
        blob = writer.finish()
        with session_scope(sessions) as session:
            owner = Owner(name=f"owner-{uuid.uuid4().hex[:8]}")
            session.add(owner)
            session.flush()
            dataset = ingest.start_ingest(session, owner.id, "uploaded", blob, modality=None)
            return ingest.ingesting_version_id(dataset), blob, dataset.id

    return start


@pytest.fixture
def ingest_task(sessions, settings, monkeypatch):
    """The worker's ingest task, on the test's database and settings."""
    from worker import tasks

    monkeypatch.setattr(tasks, "job_sessions", lambda: sessions)
    monkeypatch.setattr(tasks, "get_settings", lambda: settings)
    return tasks.ingest_version
