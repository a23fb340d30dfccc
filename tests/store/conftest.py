"""Real databases for the store tests: a SQLite file and a fresh Postgres database per backend.

Postgres comes from LILAW_TEST_POSTGRES_URL (a server URL whose user may create databases;
default postgres@127.0.0.1:5432). Each test session creates uniquely named databases there and
drops them at the end. Without a reachable server the Postgres tests skip, except under CI=true,
where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import URL, Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from core.dynamics import FLOAT_FIELDS, EpochDynamics
from core.store import AuditJob, Dataset, DatasetVersion, Owner, Sample
from core.store.db import database_url, make_engine, upgrade_database

BACKENDS = ("sqlite", "postgresql")
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

MakeDatabase = Callable[[str], URL]


@pytest.fixture(scope="session")
def postgres_server_url() -> URL:
    url = database_url(os.environ.get("LILAW_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    engine = create_engine(url)
    try:
        with engine.connect():
            pass
    except OperationalError as error:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"Postgres is unreachable under CI: {error}")
        pytest.skip(f"Postgres is unreachable: {error}")
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def make_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MakeDatabase]:
    """Returns a function giving the URL of a new, empty database of a backend."""
    servers: list[Engine] = []
    created: list[str] = []

    def make(backend: str) -> URL:
        name = f"lilaw_test_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            return database_url(f"sqlite:///{Path(tmp_path_factory.mktemp('sqlite')) / name}.db")
        if not servers:
            server_url = request.getfixturevalue("postgres_server_url")
            servers.append(create_engine(server_url, isolation_level="AUTOCOMMIT"))
        with servers[0].connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
        created.append(name)
        return servers[0].url.set(database=name)

    yield make
    for server in servers:
        with server.connect() as connection:
            for name in created:
                connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        server.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def engine(request: pytest.FixtureRequest, make_database: MakeDatabase) -> Iterator[Engine]:
    """An engine on a database of each backend, migrated to head, shared by the session."""
    url = make_database(request.param)
    upgrade_database(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session inside a transaction that is rolled back after the test; commits inside the
    test release savepoints."""
    with engine.connect() as connection:
        transaction = connection.begin()
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            yield session
        transaction.rollback()


@pytest.fixture
def make_job(session: Session) -> Callable[..., AuditJob]:
    """Creates an audit job over a new dataset version of `num_samples` samples, labels i % 3."""

    def make(num_samples: int = 10, *, is_mislabeled: np.ndarray | None = None) -> AuditJob:
        owner = Owner(name=f"owner-{uuid.uuid4().hex[:8]}")
        dataset = Dataset(owner=owner, name="digits")
        version = DatasetVersion(
            dataset=dataset,
            version=1,
            blob_sha256="0" * 64,
            blob_uri="blobs/00/0000",
            format="npz",
            modality="tabular",
            num_samples=num_samples,
            num_classes=3,
            class_names=["a", "b", "c"],
        )
        job = AuditJob(owner=owner, dataset_version=version, config={"epochs": 2}, total_epochs=2)
        session.add(job)
        session.flush()
        flags = [None] * num_samples if is_mislabeled is None else [bool(f) for f in is_mislabeled]
        session.execute(
            Sample.__table__.insert(),
            [
                {
                    "dataset_version_id": version.id,
                    "sample_index": i,
                    "sample_id": f"s{i:05d}",
                    "label": i % 3,
                    "is_mislabeled": flags[i],
                }
                for i in range(num_samples)
            ],
        )
        return job

    return make


@pytest.fixture
def make_epoch() -> Callable[..., EpochDynamics]:
    """Synthetic dynamics of one epoch: every `val_every`-th sample in the validation split,
    predicted class (sample_index + epoch) % 3."""

    def make(num_samples: int, epoch: int, *, seed: int = 0, val_every: int = 5) -> EpochDynamics:
        rng = np.random.default_rng(seed + epoch)
        index = np.arange(num_samples, dtype=np.int64)
        return EpochDynamics(
            epoch=epoch,
            sample_index=index,
            split=(index % val_every == 0).astype(np.uint8),
            predicted=(index + epoch) % 3,
            **{name: rng.random(num_samples, dtype=np.float32) for name in FLOAT_FIELDS},
        )

    return make

