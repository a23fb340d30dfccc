"""Real databases (a SQLite file, a fresh Postgres database) migrated to head, a digits subset
stored as a dataset version, and jobs over it: what `execute_job` needs, without a broker.

Postgres comes from LILAW_TEST_POSTGRES_URL (default postgres@127.0.0.1:5432); without a
reachable server the Postgres cases skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.audit import AuditConfig
from core.dataset import AuditDataset
from core.loaders import load_dataset
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
    upgrade_database,
)
from core.store.db import database_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
NUM_SAMPLES = 300


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Engine]:
    engine = create_engine(
        database_url(os.environ.get("LILAW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)), isolation_level="AUTOCOMMIT"
    )
    try:
        engine.connect().close()
    except OperationalError as error:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Postgres is unreachable under CI: {error}")
        pytest.skip(f"Postgres is unreachable: {error}")
    yield engine
    engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new database of each backend, migrated to head, shared by the session."""
    name = f"lilaw_worker_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / name}.sqlite"
        upgrade_database(url)
        yield url
        return
    server = request.getfixturevalue("postgres_server")
    with server.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    url = server.url.set(database=name).render_as_string(hide_password=False)
    upgrade_database(url)
    yield url
    with server.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


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
    return Settings(data_dir=tmp_path / "data")


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
