"""`lilaw-audit up`, `worker` and `demo`: run the service's processes.

- `up` starts the API (uvicorn), a Celery worker and beat as child processes of one command, on
  the configured database and broker: by default the embedded SQLite database and SQLAlchemy
  broker under the data dir. Ctrl-C stops them all; a job cut short resumes at the next start.
- `worker` runs just a worker (production: one per GPU, consuming the `audit` queue).
- `demo` starts the stack on a free port, audits the built-in digits with 30% injected label
  noise through the REST API, shows the progress, the top suspects and the detection metrics,
  and stops the stack. Its data stay in the data dir, where `up` serves them.
"""

from __future__ import annotations

import argparse
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
from core.settings import Settings, get_settings
from core.store import upgrade_database
from worker.celery_app import app, declare_queues, maintenance_queue

CELERY = [sys.executable, "-m", "celery", "--app", "worker.celery_app"]
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
DEMO_AUDIT = {"epochs": 15, "batch_size": 64, "inject_noise": "uniform:0.3"}


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `up`, `worker` and `demo` commands to a parser's subcommands."""
    up = commands.add_parser("up", help="start the API, a worker and beat together (Ctrl-C stops them)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.set_defaults(handler=up_command)

    worker = commands.add_parser("worker", help="run a Celery worker for audit jobs")
    worker.add_argument("--queues", help="queues to consume (default: the audit queue and its maintenance queue)")
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at a time (one per GPU)")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=worker_command)

    demo = commands.add_parser("demo", help="audit the built-in digits with 30%% injected noise, end to end")
    demo.add_argument("--epochs", type=int, default=DEMO_AUDIT["epochs"])
    demo.set_defaults(handler=demo_command)


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


def service_commands(settings: Settings, host: str, port: int, *, beat: bool = True) -> dict[str, list[str]]:
    """The command line of each process of the service: the API, a worker and beat."""
    commands = {
        "api": [sys.executable, "-m", "uvicorn", "api.app:app", "--host", host, "--port", str(port)],
        "worker": [*CELERY, *worker_arguments(settings)],
    }
    if beat:
        commands["beat"] = [*CELERY, "beat", "--loglevel", "INFO"]
    return commands


def worker_command(args: argparse.Namespace) -> int:
    app.worker_main(worker_arguments(get_settings(), args.queues, args.concurrency, args.loglevel))
    return 0


def up_command(args: argparse.Namespace) -> int:
    settings = get_settings()
    try:
        with Stack(settings, args.host, args.port) as stack:
            stack.wait_until_ready()
            print(
                f"\nLiLAW Audit is up at {stack.url} (API docs: {stack.url}/docs)\n"
                f"Data in {settings.data_dir.resolve()}\n"
                f"Create an API key with:  lilaw-audit create-key --owner NAME\n"
                f"Ctrl-C stops the API, the worker and beat.\n",
                file=sys.stderr,
            )
            stack.ended.wait()
    except KeyboardInterrupt:
        pass
    return 0


def demo_command(args: argparse.Namespace) -> int:
    from api.cli import main as client_main
    from api.client import LilawClient

    settings = get_settings()
    key = _create_demo_key(settings)
    logs = settings.data_dir / "logs"
    with Stack(settings, "127.0.0.1", free_port(), beat=False, log_dir=logs) as stack:
        print(f"Starting the API and a worker (logs in {logs})...", file=sys.stderr)
        stack.wait_until_ready()
        with LilawClient(stack.url, key) as client:
            dataset = client.create_builtin_dataset("digits", name="digits-demo")
            version = dataset.versions[-1]
            print(f"dataset {dataset.id}: digits, {version.num_samples} samples, {version.num_classes} classes")
            job = client.submit_audit(dataset.id, **{**DEMO_AUDIT, "epochs": args.epochs})
        print(f"job {job.id}: LiLAW audit, {args.epochs} epochs, {DEMO_AUDIT['inject_noise']} label noise injected")
        service = ["--url", stack.url, "--api-key", key]
        status = client_main(["status", str(job.id), *service])
        if status == 0:
            print("\nTop 10 suspected mislabels (known_mislabeled: the label was flipped by the injected noise)")
            status = client_main(["suspects", str(job.id), "--limit", "10", *service])
    print(
        f"\nThe results stay in {settings.data_dir.resolve()}: `lilaw-audit up` serves them "
        f"(job {job.id}, with the API key above)."
    )
    return status


def _create_demo_key(settings: Settings) -> str:
    from api.auth import create_key_in_database

    key = create_key_in_database(settings, "demo")
    print(f"API key of owner 'demo': {key}")
    return key


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
        self.commands = service_commands(settings, host, port, beat=beat)
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
        signals = {"worker": signal.SIGQUIT}
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
