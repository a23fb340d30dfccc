"""Ingests whose worker was lost (`core.services.ingest_reaper`), on SQLite and Postgres: a worker
killed in the middle of an ingest leaves its heartbeat to go stale; the reaper sends the ingest
again once, and the ingest task run again completes it; lost a second time, or with its file gone,
the ingest fails with a message that says so. A running ingest and one still waiting in the queue
are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from core.services.ingest_reaper import (
    LOST_MESSAGE,
    IngestHeartbeat,
    heartbeat_path,
    reap_lost_ingests,
    requeued_path,
)
from core.store import Dataset, DatasetVersion, Sample, session_scope


@pytest.fixture
def settings(settings):
    """The worker tests' settings with the shortest allowed ingest timeout."""
    return settings.model_copy(update={"ingest_stale_s": 3})


def _lose_worker(settings, version_id: int) -> None:
    """What a worker killed in the middle of the version's ingest leaves: its heartbeat, silent
    for longer than the timeout."""
    path = heartbeat_path(settings, version_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    long_ago = time.time() - settings.ingest_stale_s - 1
    os.utime(path, (long_ago, long_ago))


def _version(sessions, version_id: int) -> DatasetVersion | None:
    with session_scope(sessions) as session:
        return session.get(DatasetVersion, version_id, options=[joinedload(DatasetVersion.dataset)])


def _dataset(sessions, dataset_id: int) -> Dataset:
    with session_scope(sessions) as session:
        return session.get(Dataset, dataset_id)


def test_a_worker_killed_mid_ingest_is_requeued_once_and_the_task_run_again_completes(
    sessions, settings, start_upload, ingest_task, db_url, digits_pngs
):
    version_id, _, _ = start_upload()
    num_images = len(digits_pngs)
    # The real task in a worker process whose read never ends, killed while it reads.
    code = (
        "import sys, time; from core.services import ingest;"
        "ingest.read_upload = lambda *args, **kwargs: time.sleep(600);"
        "from worker import tasks; tasks.ingest_version(int(sys.argv[1]))"
    )
    service = ("LILAW_", "DATABASE_URL", "CELERY_BROKER_URL")
    env = {name: value for name, value in os.environ.items() if not name.startswith(service)}
    env.update(LILAW_DATA_DIR=str(settings.data_dir), DATABASE_URL=db_url, LILAW_INGEST_STALE_S="3")
    worker = subprocess.Popen([sys.executable, "-c", code, str(version_id)], env=env)
    beat = heartbeat_path(settings, version_id)
    try:
        deadline = time.monotonic() + 120
        while not beat.exists() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert beat.exists(), "the ingest task never started beating"
        assert reap_lost_ingests(sessions, settings, requeue=pytest.fail) == {"requeued": [], "failed": []}
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
    time.sleep(settings.ingest_stale_s + 0.5)
    sent: list[int] = []

    assert reap_lost_ingests(sessions, settings, requeue=sent.append) == {"requeued": [version_id], "failed": []}

    assert sent == [version_id] and _version(sessions, version_id).status == "ingesting"
    assert reap_lost_ingests(sessions, settings, requeue=sent.append) == {"requeued": [], "failed": []}  # queued
    assert ingest_task(sent[0]) == "ready"
    version = _version(sessions, version_id)
    assert (version.status, version.num_samples, version.dataset.status) == ("ready", num_images, "ready")
    with session_scope(sessions) as session:
        count = select(func.count()).select_from(Sample).where(Sample.dataset_version_id == version_id)
        assert session.scalar(count) == num_images
    assert not beat.exists() and not requeued_path(settings, version_id).exists()
    assert reap_lost_ingests(sessions, settings, requeue=sent.append) == {"requeued": [], "failed": []}


def test_an_ingest_lost_a_second_time_fails_with_a_message_that_says_so(sessions, settings, start_upload):
    version_id, blob, dataset_id = start_upload()
    _lose_worker(settings, version_id)
    sent: list[int] = []
    assert reap_lost_ingests(sessions, settings, requeue=sent.append)["requeued"] == [version_id]
    _lose_worker(settings, version_id)  # the requeued run's worker is lost too

    assert reap_lost_ingests(sessions, settings, requeue=sent.append) == {"requeued": [], "failed": [version_id]}

    assert sent == [version_id] and _version(sessions, version_id) is None
    dataset = _dataset(sessions, dataset_id)
    assert (dataset.status, dataset.ingest_error) == ("failed", LOST_MESSAGE)
    assert not blob.path.exists()
    assert not heartbeat_path(settings, version_id).exists() and not requeued_path(settings, version_id).exists()


def test_a_lost_ingest_whose_file_is_gone_fails_at_once(sessions, settings, start_upload):
    version_id, blob, dataset_id = start_upload()
    blob.path.unlink()
    _lose_worker(settings, version_id)
    sent: list[int] = []

    assert reap_lost_ingests(sessions, settings, requeue=sent.append) == {"requeued": [], "failed": [version_id]}

    assert sent == [] and _dataset(sessions, dataset_id).ingest_error == LOST_MESSAGE


def test_running_and_waiting_ingests_are_left_alone(sessions, settings, start_upload, ingest_task):
    running, _, _ = start_upload()
    waiting, _, _ = start_upload()  # its task not started: no heartbeat
    with IngestHeartbeat(settings, running) as heartbeat:
        os.utime(heartbeat.path, (0, 0))  # the last beat long ago; the thread beats again
        deadline = time.monotonic() + 10
        while heartbeat.path.stat().st_mtime < time.time() - settings.ingest_stale_s and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reap_lost_ingests(sessions, settings, requeue=pytest.fail) == {"requeued": [], "failed": []}
    assert not heartbeat.path.exists()
    assert {_version(sessions, running).status, _version(sessions, waiting).status} == {"ingesting"}
    assert ingest_task(running) == "ready" and ingest_task(waiting) == "ready"


def test_a_requeue_the_broker_refuses_is_tried_again_by_the_next_reap(sessions, settings, start_upload):
    version_id, _, _ = start_upload()
    _lose_worker(settings, version_id)

    def refuse(_version_id: int) -> None:
        raise ConnectionError("the broker is down")

    with pytest.raises(ConnectionError):
        reap_lost_ingests(sessions, settings, requeue=refuse)
    sent: list[int] = []
    assert reap_lost_ingests(sessions, settings, requeue=sent.append) == {"requeued": [version_id], "failed": []}
    assert sent == [version_id]
