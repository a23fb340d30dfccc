"""Several API processes start at once (uvicorn --workers) and each upgrades the schema at
startup: the upgrades must take turns, not race to create the same tables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect

from core.store.db import make_engine

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_upgrades_started_together_leave_one_current_schema(backend, make_database):
    url = make_database(backend)
    upgrade = f"from migrations import upgrade_database; upgrade_database({url!r})"
    processes = [
        subprocess.Popen([sys.executable, "-c", upgrade], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    failures = [error for process in processes if (error := process.communicate(timeout=120)[1]) and process.returncode]
    assert failures == []
    engine = make_engine(url)
    try:
        assert {"datasets", "audit_jobs", "sample_epochs"} <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()
