"""Real databases for the store tests: a SQLite file and a fresh Postgres database per backend
(tests/conftest.py's `make_database`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.dynamics import FLOAT_FIELDS, OPTIONAL_FLOAT_FIELDS, EpochDynamics
from core.store import AuditJob, Dataset, DatasetVersion, Owner, Sample
from core.store.db import make_engine
from migrations import upgrade_database

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session", params=BACKENDS)
def engine(request: pytest.FixtureRequest, make_database: Callable[[str], str]) -> Iterator[Engine]:
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
    """Synthetic dynamics of one epoch (the optional fields too): every `val_every`-th sample in
    the validation split, predicted class (sample_index + epoch) % 3."""

    def make(num_samples: int, epoch: int, *, seed: int = 0, val_every: int = 5) -> EpochDynamics:
        rng = np.random.default_rng(seed + epoch)
        index = np.arange(num_samples, dtype=np.int64)
        return EpochDynamics(
            epoch=epoch,
            sample_index=index,
            split=(index % val_every == 0).astype(np.uint8),
            predicted=(index + epoch) % 3,
            **{name: rng.random(num_samples, dtype=np.float32) for name in (*FLOAT_FIELDS, *OPTIONAL_FLOAT_FIELDS)},
        )

    return make

