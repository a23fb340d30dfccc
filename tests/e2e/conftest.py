"""The service as it runs: a uvicorn server, the audit and webhook Celery workers and beat as
subprocesses (the command lines of `lilaw-audit up`), on (a) a SQLite database with the
SQLAlchemy broker and (b) Postgres with Redis. Each test gets its own database, broker queue and
data dir; a module changes the service's settings by overriding `service_settings`.

The databases come from tests/conftest.py's `make_database`, Redis from its `redis_url`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from cli.stack import free_port, process_commands
from core.settings import Settings
from core.store.db import make_engine
from worker.celery_app import declare_queues

HEARTBEAT_TIMEOUT_S = 6
STARTUP_TIMEOUT_S = 120
JOB_TIMEOUT_S = 240


@dataclass
class Service:
    """The running service of one test: its URL, API key, database and processes."""

    url: str
    settings: Settings
    database_url: str
    commands: dict[str, list[str]]
    env: dict[str, str]
    log_dir: Path
    api_key: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, command: str | None = None) -> None:
        """Start the process `name` running `command`'s command line (by default its own)."""
        log = open(self.log_dir / f"{name}.log", "ab")
        self.processes[name] = subprocess.Popen(
            self.commands[command or name], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def kill(self, name: str) -> None:
        """SIGKILL the process and its children, as a crashed host would."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.api_key}"}, timeout=30)

    def wait_for_job(self, http: httpx.Client, job_id: int, done, what: str) -> dict:
        """The job once `done(job)` holds, polled over the API."""
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline:
            job = http.get(f"/jobs/{job_id}", params={"trajectory": False}).raise_for_status().json()
            if done(job):
                return job
            time.sleep(0.3)
        raise AssertionError(f"job {job_id} never reached {what}; last seen {job}")

    def engine(self) -> Engine:
        return make_engine(self.database_url)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-4000:]}" for path in sorted(self.log_dir.glob("*.log")))


@pytest.fixture(params=["sqlite", "postgres-redis"])
def backend_urls(
    request: pytest.FixtureRequest, tmp_path: Path, make_database: Callable[[str], str]
) -> tuple[str, str]:
    """(database URL, broker URL) of a new database and broker of each kind."""
    if request.param == "sqlite":
        return make_database("sqlite"), f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    return make_database("postgresql"), request.getfixturevalue("redis_url")


@pytest.fixture
def service_settings() -> dict:
    """Settings of the service (LILAW_... values) for the tests of a module."""
    return {
        "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S,
        "job_soft_time_limit_s": 900,
        # Tests advance time for schedules and webhook retries themselves: beat stays out of it.
        "schedule_tick_s": 3600,
        "webhook_allow_private_hosts": True,  # the tests' receivers listen on loopback
    }


@pytest.fixture
def service(backend_urls: tuple[str, str], tmp_path: Path, service_settings: dict) -> Iterator[Service]:
    """API, the audit and webhook workers and beat running on a fresh database and broker queue,
    with an API key."""
    db_url, broker_url = backend_urls
    values = {"data_dir": tmp_path / "data", "audit_queue": f"audit-{uuid.uuid4().hex[:8]}", **service_settings}
    urls = {"LILAW_DATABASE_URL": db_url, "LILAW_BROKER_URL": broker_url}
    settings = Settings(**values, **urls)
    env = {**os.environ, **urls, **{f"LILAW_{name.upper()}": str(value) for name, value in values.items()}}
    declare_queues(settings)
    port = free_port()
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    service = Service(
        url=f"http://127.0.0.1:{port}", settings=settings, database_url=db_url, env=env, log_dir=log_dir,
        commands=process_commands(settings, "127.0.0.1", port),
    )  # fmt: skip
    created = subprocess.run(
        [sys.executable, "-m", "cli", "create-key", "--owner", "e2e"], env=env, capture_output=True, text=True
    )
    assert created.returncode == 0, created.stderr
    service.api_key = created.stdout.strip()
    for name in service.commands:
        service.start(name)
    try:
        _wait_until_healthy(service)
        yield service
    finally:
        service.stop()
    print(service.logs())


def _wait_until_healthy(service: Service) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{service.url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.3)
    raise AssertionError(f"the API did not start:\n{service.logs()}")
