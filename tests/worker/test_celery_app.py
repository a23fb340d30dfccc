"""The Celery app touches no file when it is built (every `lilaw-audit` command, the API and the
tests import it); a worker or beat starting on it creates the data dir, where the SQLite broker
and beat's schedule live."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_python(code: str, cwd: Path, **settings: str) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter, with only the given service settings (LILAW_...) set."""
    service = ("LILAW_", "DATABASE_URL", "CELERY_BROKER_URL")
    env = {name: value for name, value in os.environ.items() if not name.startswith(service)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env={**env, **settings}, capture_output=True, text=True, timeout=300
    )


def test_building_the_app_writes_nothing(tmp_path):
    run = run_python("from worker.celery_app import app; app.conf.broker_url", tmp_path)
    assert run.returncode == 0, run.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_worker_or_beat_starting_creates_the_data_dir(tmp_path):
    data_dir = tmp_path / "data"
    starting = "from worker.celery_app import app; app.loader.init_worker()"  # what a worker and beat do first
    run = run_python(starting, tmp_path, LILAW_DATA_DIR=str(data_dir))
    assert run.returncode == 0, run.stderr
    assert data_dir.is_dir()
