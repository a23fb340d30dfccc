"""A fleet: two real Celery worker processes (the command line of `lilaw-audit worker`) on one
Postgres database and one Redis queue.

- Four queued jobs: each runs once (one claim each, by one task), both workers take some, and
  every job has exactly one dynamics row per sample per epoch.
- A worker that lost its claim (the job's claim handed to another task id in the database, as a
  takeover does) has its next per-epoch write refused and stops: no dynamics row, heartbeat or
  result of its is written after the takeover.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import redis
from sqlalchemy import Engine, func, select, update

from cli.stack import CELERY, worker_arguments
from core.audit import AuditConfig
from core.loaders import load_dataset
from core.settings import Settings
from core.store import AuditJob, Dataset, DatasetVersion, JobStatus, Owner, Sample, SampleEpoch, make_engine
from core.store import make_session_factory, session_scope
from migrations import upgrade_database
from worker.celery_app import AUDIT_TASK, declare_queues, maintenance_queue, make_celery

SAMPLES = 300
EPOCHS = 3
STARTUP_TIMEOUT_S = 120
JOBS_TIMEOUT_S = 300
READY = re.compile(r"\bready\.")


@dataclass
class Fleet:
    settings: Settings
    engine: Engine
    log_dir: Path
    env: dict[str, str]
    blob: Path
    num_classes: int
    workers: dict[str, subprocess.Popen]

    def start_worker(self, name: str) -> None:
        command = [*CELERY, *worker_arguments(self.settings), "--hostname", f"{name}@%h"]
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.workers[name] = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not all(READY.search(self.log(name)) for name in self.workers):
            for name, process in self.workers.items():
                assert process.poll() is None, f"worker {name} exited:\n{self.log(name)}"
            assert time.monotonic() < deadline, f"the workers did not start:\n{self.logs()}"
            time.sleep(0.5)

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-4000:]}" for name in self.workers)

    def add_job(self, epochs: int) -> int:
        """A queued job over a new version of the digits subset (its rows as an upload stores them)."""
        digits = load_dataset(self.blob)
        with session_scope(make_session_factory(self.engine)) as session:
            owner = Owner(name=f"owner-{uuid.uuid4().hex[:8]}")
            version = DatasetVersion(
                dataset=Dataset(owner=owner, name="digits"), version=1, blob_sha256="0" * 64, blob_uri=str(self.blob),
                format="npz", modality="image", num_samples=len(digits), num_classes=digits.num_classes,
                class_names=digits.class_names,
            )  # fmt: skip
            config = AuditConfig(epochs=epochs, batch_size=64, device="cpu").to_dict()
            job = AuditJob(owner=owner, dataset_version=version, config=config)
            session.add(job)
            session.flush()
            session.execute(
                Sample.__table__.insert(),
                [
                    {"dataset_version_id": version.id, "sample_index": i, "sample_id": sid, "label": int(label)}
                    for i, (sid, label) in enumerate(zip(digits.sample_ids, digits.y, strict=True))
                ],
            )
            return job.id

    def enqueue(self, job_id: int) -> str:
        return make_celery(self.settings).send_task(AUDIT_TASK, args=[job_id], queue=self.settings.audit_queue).id

    def job(self, job_id: int) -> AuditJob:
        with make_session_factory(self.engine)() as session:
            return session.get(AuditJob, job_id)

    def rows_per_epoch(self, job_id: int) -> dict[int, tuple[int, int]]:
        """epoch -> (rows, distinct sample indexes) of the job's dynamics."""
        statement = (
            select(SampleEpoch.epoch, func.count(), func.count(SampleEpoch.sample_index.distinct()))
            .where(SampleEpoch.job_id == job_id)
            .group_by(SampleEpoch.epoch)
        )
        with self.engine.connect() as connection:
            return {epoch: (rows, distinct) for epoch, rows, distinct in connection.execute(statement)}


@pytest.fixture
def fleet(make_database: Callable[[str], str], redis_url: str, tmp_path: Path) -> Iterator[Fleet]:
    """Two workers, `w1` and `w2`, on a new Postgres database and a Redis queue of their own."""
    database = make_database("postgresql")
    upgrade_database(database)
    values = {
        "data_dir": tmp_path / "data",
        "audit_queue": f"fleet-{uuid.uuid4().hex[:8]}",
        # Long enough that no claim goes stale during the test: only the test hands claims over.
        "heartbeat_timeout_s": 600,
    }
    urls = {"LILAW_DATABASE_URL": database, "LILAW_BROKER_URL": redis_url}
    settings = Settings(**values, **urls)
    env = {**os.environ, **urls, "OMP_NUM_THREADS": "1"}
    env |= {f"LILAW_{name.upper()}": str(value) for name, value in values.items()}
    declare_queues(settings)
    digits = load_dataset("digits", limit=SAMPLES)
    blob = tmp_path / "digits.npz"
    np.savez(blob, x=digits.x, y=digits.y, sample_ids=np.array(digits.sample_ids))
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    engine = make_engine(database)
    fleet = Fleet(settings, engine, log_dir, env, blob, digits.num_classes, workers={})
    try:
        yield fleet
    finally:
        for process in fleet.workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        engine.dispose()
        queue = settings.audit_queue
        with redis.Redis.from_url(redis_url) as client:
            for name in (queue, maintenance_queue(settings)):
                client.delete(name, f"_kombu.binding.{name}")


def received_tasks(log: str) -> set[str]:
    return set(re.findall(rf"Task {re.escape(AUDIT_TASK)}\[([0-9a-f-]+)\] received", log))


def test_two_workers_run_four_queued_jobs_once_each(fleet: Fleet):
    fleet.start_worker("w1")
    fleet.start_worker("w2")
    fleet.wait_until_ready()
    jobs = [fleet.add_job(EPOCHS) for _ in range(4)]
    tasks = {job_id: fleet.enqueue(job_id) for job_id in jobs}

    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while not all(fleet.job(job_id).status is JobStatus.SUCCEEDED for job_id in jobs):
        failed = [job_id for job_id in jobs if fleet.job(job_id).status is JobStatus.FAILED]
        assert not failed, f"jobs {failed} failed: {fleet.job(failed[0]).error}\n{fleet.logs()}"
        assert time.monotonic() < deadline, f"the jobs did not finish:\n{fleet.logs()}"
        time.sleep(0.5)

    for job_id in jobs:
        job = fleet.job(job_id)
        assert job.result["attempts"] == 1, f"job {job_id} was claimed {job.result['attempts']} times"
        assert job.celery_task_id == tasks[job_id]  # claimed by its own message's task, no other
        assert fleet.rows_per_epoch(job_id) == {epoch: (SAMPLES, SAMPLES) for epoch in range(1, EPOCHS + 1)}
    by_worker = {name: received_tasks(fleet.log(name)) for name in fleet.workers}
    assert by_worker["w1"] and by_worker["w2"], f"one worker took every job: {by_worker}"
    assert not by_worker["w1"] & by_worker["w2"], "a task was delivered to both workers"
    assert by_worker["w1"] | by_worker["w2"] == set(tasks.values())


def test_a_worker_that_lost_its_claim_has_its_next_epoch_write_refused_and_stops(fleet: Fleet):
    fleet.start_worker("w1")
    fleet.wait_until_ready()
    job_id = fleet.add_job(epochs=500)  # far longer than the test: it can only stop by losing its claim
    task_id = fleet.enqueue(job_id)
    deadline = time.monotonic() + JOBS_TIMEOUT_S
    while not fleet.rows_per_epoch(job_id):
        assert fleet.job(job_id).status in (JobStatus.QUEUED, JobStatus.RUNNING), fleet.logs()
        assert time.monotonic() < deadline, f"no epoch was written:\n{fleet.logs()}"
        time.sleep(0.2)
    assert fleet.job(job_id).celery_task_id == task_id

    with fleet.engine.begin() as connection:  # another execution takes the job over
        connection.execute(update(AuditJob).where(AuditJob.id == job_id).values(celery_task_id="another-task"))
    taken_over = fleet.job(job_id)
    rows_at_takeover = fleet.rows_per_epoch(job_id)

    finished = re.compile(rf"Task {re.escape(AUDIT_TASK)}\[{re.escape(task_id)}\] succeeded")
    while not finished.search(fleet.log("w1")):
        assert time.monotonic() < deadline, f"the worker did not stop:\n{fleet.logs()}"
        time.sleep(0.2)
    time.sleep(1.0)  # anything the stopped execution still wrote would be committed by now

    job = fleet.job(job_id)
    assert job.celery_task_id == "another-task" and job.status is JobStatus.RUNNING  # left to its new holder
    assert job.heartbeat_at == taken_over.heartbeat_at and job.epoch == taken_over.epoch
    assert job.result == taken_over.result and job.finished_at is None
    assert fleet.rows_per_epoch(job_id) == rows_at_takeover, "an epoch was written after the claim was lost"
    assert max(rows_at_takeover) < 500
    assert fleet.workers["w1"].poll() is None  # the worker lives on, free for the next job
