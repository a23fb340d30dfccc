"""The API against real databases and real brokers, on two backends:

- sqlite: a SQLite file per test (copied from one migrated at session start) and Celery over
  kombu's SQLAlchemy transport on a SQLite file, as in the embedded mode;
- postgres: a Postgres database created for the session (rows deleted before each test) and
  Celery over Redis, with a queue of its own per test, as in production.

The Postgres database comes from tests/conftest.py's `make_database`, Redis from its `redis_url`.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from kombu import Connection
from sqlalchemy import create_engine, func, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.auth import create_api_key
from core.audit import AuditConfig, AuditResult, run_audit
from core.dynamics import EpochDynamics
from core.loaders import load_dataset
from core.noise import apply_noise
from core.settings import Settings, get_settings
from core.store import Base, Dataset, DatasetVersion, Sample, session_scope
from core.store.dynamics_writer import metric_rows, write_epoch, write_metrics, write_scores, write_trajectory
from core.store.models import AuditJob, JobStatus
from worker.celery_app import INGEST_TASK, ingest_queue
from migrations import upgrade_database

AUDIT_EPOCHS = 3
AUDIT_SAMPLES = 300


@pytest.fixture(scope="session")
def sqlite_template(make_database: Callable[[str], str]) -> Path:
    """A SQLite database migrated to head, copied into the data dir of each sqlite case."""
    url = make_database("sqlite")
    upgrade_database(url)
    return Path(make_url(url).database)


@pytest.fixture(scope="session")
def postgres_url(make_database: Callable[[str], str]) -> str:
    url = make_database("postgresql")
    upgrade_database(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings of a fresh service; also in the environment, for what reads `get_settings()`."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    # The tests' webhook receivers listen on loopback, which a service refuses by default.
    env = {"LILAW_DATA_DIR": str(data_dir), "LILAW_WEBHOOK_ALLOW_PRIVATE_HOSTS": "true"}
    if request.param == "sqlite":
        shutil.copy(request.getfixturevalue("sqlite_template"), data_dir / "lilaw.sqlite")
    else:
        database = request.getfixturevalue("postgres_url")
        _empty_tables(database)
        env |= {
            "LILAW_DATABASE_URL": database,
            "LILAW_BROKER_URL": request.getfixturevalue("redis_url"),
            "LILAW_AUDIT_QUEUE": f"audit-test-{uuid.uuid4().hex[:12]}",
        }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    yield settings
    get_settings.cache_clear()
    if request.param == "postgres":
        queue = settings.audit_queue
        redis.Redis.from_url(settings.resolved_broker_url).delete(queue, f"_kombu.binding.{queue}")


def _empty_tables(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            for table in reversed(Base.metadata.sorted_tables):
                connection.execute(table.delete())
    finally:
        engine.dispose()


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


@pytest.fixture
def sessions(client: TestClient) -> sessionmaker[Session]:
    return client.app.state.sessions


@pytest.fixture
def make_key(sessions: sessionmaker[Session]) -> Callable[[str], dict[str, str]]:
    """Creates an API key for an owner; returns the request headers that carry it."""

    def make(owner: str) -> dict[str, str]:
        with session_scope(sessions) as session:
            return {"Authorization": f"Bearer {create_api_key(session, owner)}"}

    return make


@pytest.fixture
def alice(make_key) -> dict[str, str]:
    return make_key("alice")


@pytest.fixture
def bob(make_key) -> dict[str, str]:
    return make_key("bob")


@pytest.fixture
def dataset_rows(sessions: sessionmaker[Session]) -> Callable[[], tuple[int, ...]]:
    """Counts the rows of datasets, dataset_versions and samples."""

    def count() -> tuple[int, ...]:
        with sessions() as session:
            return tuple(
                session.scalar(select(func.count()).select_from(model)) for model in (Dataset, DatasetVersion, Sample)
            )

    return count


@pytest.fixture
def blob_files(settings: Settings) -> Callable[[], list[str]]:
    """Lists every file under the blob dir, uploads being received included."""

    def files() -> list[str]:
        return sorted(
            str(path.relative_to(settings.blob_dir)) for path in settings.blob_dir.rglob("*") if path.is_file()
        )

    return files


def _take_tasks(settings: Settings, queue_name: str) -> list[dict]:
    """Consumes the messages waiting in a broker queue: task name, id and arguments."""
    tasks = []
    with Connection(settings.resolved_broker_url) as connection, connection.SimpleQueue(queue_name) as queue:
        while True:
            try:
                message = queue.get(block=False)
            except queue.Empty:
                return tasks
            args, _kwargs, _embed = message.decode()
            tasks.append({"task": message.headers["task"], "id": message.headers["id"], "args": args})
            message.ack()


@pytest.fixture
def take_queued_tasks(settings: Settings) -> Callable[[], list[dict]]:
    """Consumes the messages waiting in the broker's audit queue: task name, id and arguments."""
    return lambda: _take_tasks(settings, settings.audit_queue)


@pytest.fixture
def take_queued_ingest(settings: Settings) -> Callable[[], int]:
    """Consumes the one message waiting in the broker's ingest queue: the id of the version it ingests."""

    def take() -> int:
        [task] = _take_tasks(settings, ingest_queue(settings))
        assert task["task"] == INGEST_TASK
        [version_id] = task["args"]
        return version_id

    return take


@dataclass
class DigitsAudit:
    """A real audit of a noisy digits subset, kept in memory to be written into any job."""

    npz: bytes
    result: AuditResult
    epochs: list[EpochDynamics]


@pytest.fixture(scope="session")
def digits_audit(tmp_path_factory: pytest.TempPathFactory) -> DigitsAudit:
    """Digits with 30% uniform label noise saved as an .npz with its flags, and a LiLAW audit of
    exactly that file (small CNN, a few epochs on the CPU)."""
    noisy = apply_noise(load_dataset("digits", limit=AUDIT_SAMPLES), "uniform", 0.3, seed=0)
    path = tmp_path_factory.mktemp("digits") / "noisy-digits.npz"
    np.savez(path, x=noisy.x, y=noisy.y, flags=noisy.is_mislabeled, sample_ids=np.array(noisy.sample_ids))
    epochs: list[EpochDynamics] = []
    config = AuditConfig(model="small-cnn", epochs=AUDIT_EPOCHS, batch_size=64, seed=0, device="cpu")
    result = run_audit(load_dataset(path), config, on_epoch=epochs.append)
    return DigitsAudit(npz=path.read_bytes(), result=result, epochs=epochs)


@dataclass
class FinishedJob:
    dataset_id: int
    job_id: int
    audit: DigitsAudit

    @property
    def num_samples(self) -> int:
        return len(self.audit.result.dataset)

    @property
    def num_epochs(self) -> int:
        return len(self.audit.epochs)


@pytest.fixture
def finished_job(client: TestClient, alice, sessions, settings: Settings, digits_audit: DigitsAudit) -> FinishedJob:
    """The digits audit uploaded, submitted, and its results written as the worker writes them."""
    response = client.post("/datasets", files={"file": ("noisy-digits.npz", digits_audit.npz)}, headers=alice)
    dataset_id = response.json()["id"]
    job_id = client.post("/jobs", json={"dataset_id": dataset_id, "epochs": AUDIT_EPOCHS}, headers=alice).json()["id"]
    write_results(sessions, settings, job_id, digits_audit)
    return FinishedJob(dataset_id=dataset_id, job_id=job_id, audit=digits_audit)


@pytest.fixture
def finish_job(sessions: sessionmaker[Session], settings: Settings, digits_audit: DigitsAudit) -> Callable[[int], None]:
    """Writes the digits audit's results into a job of the digits dataset, as the worker does."""
    return lambda job_id: write_results(sessions, settings, job_id, digits_audit)


def write_results(sessions: sessionmaker[Session], settings: Settings, job_id: int, audit: DigitsAudit) -> None:
    result = audit.result
    model_path = settings.job_dir / str(job_id) / "model.pt"
    model_path.parent.mkdir(parents=True)
    torch.save(result.model.state_dict(), model_path)
    with session_scope(sessions) as session:
        for dynamics in audit.epochs:
            write_epoch(session, job_id, dynamics)
        write_trajectory(session, job_id, result.trajectory)
        write_scores(session, job_id, result.scores, result.default_scores, result.rank)
        write_metrics(session, job_id, metric_rows(result.detection))
        job = session.get(AuditJob, job_id)
        job.status = JobStatus.SUCCEEDED
        job.epoch = AUDIT_EPOCHS
        job.result = {"timings": result.timings, "model": result.model_name}
        job.result_paths = {"model": str(model_path.relative_to(settings.data_dir))}
