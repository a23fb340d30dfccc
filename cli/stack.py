"""The service's processes on one machine: the API (uvicorn), a Celery worker for audits, one for
webhook deliveries and beat as child processes (`Stack`), as `lilaw-audit up` and `demo` run them
and the end-to-end tests start them.

The webhook worker consumes the webhooks queue (and the maintenance queue, so the reaper runs
while the audit worker is busy): a slow receiver delays other deliveries, never an audit. The
ingest worker consumes the ingest queue: a large upload is read beside a running audit."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import httpx

from core.errors import AuditError
from core.settings import Settings
from migrations import upgrade_database
from worker.celery_app import declare_queues, ingest_queue, maintenance_queue, webhooks_queue

CELERY = [sys.executable, "-m", "celery", "--app", "worker.celery_app"]
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


def worker_arguments(
    settings: Settings, queues: str | None = None, concurrency: int = 1, loglevel: str = "INFO"
) -> list[str]:
    """`celery worker` arguments: prefork children (so time limits hold and a cold shutdown can
    stop a running job), late acks and prefetch 1 come from the app's configuration."""
    return [
        "worker",
        "--queues", queues or f"{settings.audit_queue},{maintenance_queue(settings)}",
        "--concurrency", str(concurrency),
        "--pool", "prefork",
        "--loglevel", loglevel,
    ]  # fmt: skip


def webhook_worker_arguments(settings: Settings, loglevel: str = "INFO") -> list[str]:
    """`celery worker` arguments of the webhook deliveries' worker: one process, one pass at a
    time (passes share the work through the deliveries' claims), named apart from the audit
    worker on the same host."""
    return [
        "worker",
        "--queues", f"{webhooks_queue(settings)},{maintenance_queue(settings)}",
        "--pool", "solo",
        "--hostname", "webhooks@%h",
        "--loglevel", loglevel,
    ]  # fmt: skip


def ingest_worker_arguments(settings: Settings, loglevel: str = "INFO") -> list[str]:
    """`celery worker` arguments of the uploads' ingest worker: one prefork child (time limits
    hold; a large file's decoding stays out of the audit worker), named apart on the same host."""
    return [
        "worker",
        "--queues", ingest_queue(settings),
        "--concurrency", "1",
        "--pool", "prefork",
        "--hostname", "ingest@%h",
        "--loglevel", loglevel,
    ]  # fmt: skip


def process_commands(settings: Settings, host: str, port: int, *, beat: bool = True) -> dict[str, list[str]]:
    """The command line of each process of the service: the API, the audit and ingest workers
    and, with `beat`, the webhook worker and beat (whose periodic tasks are what the webhook
    worker runs)."""
    commands = {
        "api": [sys.executable, "-m", "uvicorn", "api.app:app", "--host", host, "--port", str(port),
                "--workers", str(settings.api_workers)],
        "worker": [*CELERY, *worker_arguments(settings)],
        "ingest": [*CELERY, *ingest_worker_arguments(settings)],
    }
    if beat:
        commands["webhooks"] = [*CELERY, *webhook_worker_arguments(settings)]
        commands["beat"] = [*CELERY, "beat", "--loglevel", "INFO"]
    return commands


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StackError(AuditError):
    """A process of the stack exited on its own."""


class Stack:
    """The API, a worker and (optionally) beat as child processes, each in its own session so
    that a Ctrl-C reaches only this process, which then stops them in order: the worker by a
    cold shutdown (a running job's message goes back to the queue, and the job resumes from its
    checkpoint when a worker comes back), the API and beat by SIGTERM. When a child exits on its
    own the others are stopped too, and leaving the block raises `StackError`."""

    def __init__(self, settings: Settings, host: str, port: int, *, beat: bool = True, log_dir: Path | None = None):
        self.settings = settings
        self.url = f"http://{host}:{port}"
        self.log_dir = log_dir
        self.commands = process_commands(settings, host, port, beat=beat)
        self.processes: dict[str, subprocess.Popen] = {}
        self.failure: str | None = None
        self.ended = threading.Event()
        self._logs: list[IO] = []

    def __enter__(self) -> Stack:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # stopped like by Ctrl-C
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_database(self.settings.resolved_database_url)
        declare_queues(self.settings)
        env = {**os.environ, "LILAW_DATA_DIR": str(self.settings.data_dir.resolve())}
        for name, command in self.commands.items():
            self.processes[name] = subprocess.Popen(command, env=env, start_new_session=True, **self._output(name))
        threading.Thread(target=self._watch, name="stack-watch", daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.ended.set()
        self.stop()
        if self.failure is not None:
            raise StackError(self.failure)

    def _output(self, name: str) -> dict:
        if self.log_dir is None:
            return {}
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_dir / f"{name}.log", "ab")
        self._logs.append(log)
        return {"stdout": log, "stderr": subprocess.STDOUT}

    def _watch(self) -> None:
        while not self.ended.wait(0.5):
            for name, process in self.processes.items():
                if process.poll() is not None:
                    where = f"; see {self.log_dir / name}.log" if self.log_dir else ""
                    self.failure = f"the {name} process exited with status {process.returncode}{where}"
                    self.ended.set()
                    self.stop()
                    return

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and not self.ended.is_set():
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        if not self.ended.is_set():
            self.failure = f"the API did not answer at {self.url} within {STARTUP_TIMEOUT_S:.0f} s"
        raise StackError(self.failure)

    def stop(self) -> None:
        signals = {"worker": signal.SIGQUIT, "webhooks": signal.SIGQUIT, "ingest": signal.SIGQUIT}
        for name, process in self.processes.items():
            if process.poll() is None:
                process.send_signal(signals.get(name, signal.SIGTERM))
        for process in self.processes.values():
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for log in self._logs:
            log.close()
