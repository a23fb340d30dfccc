"""`lilaw-audit up`, `worker`, `demo` and `create-key`: run the service's processes, and create API
keys in its database.

- `up` starts the API (uvicorn), a Celery worker and beat as child processes of one command, on
  the configured database and broker: by default the embedded SQLite database and SQLAlchemy
  broker under the data dir. Ctrl-C stops them all; a job cut short resumes at the next start.
- `worker` runs just a worker (production: one per GPU, consuming the `audit` queue).
- `demo` starts the stack on a free port, audits the built-in digits with 30% injected label
  noise through the REST API, shows the progress, the top suspects and the detection metrics,
  and stops the stack. Its data stay in the data dir, where `up` serves them.
- `create-key` runs where the service's database is.

The service (Celery, SQLAlchemy, the API) is imported when a command runs, not when the parser is
built.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cli.client_commands import follow_job, print_suspects, report_job, reporting_service_errors

if TYPE_CHECKING:
    from core.settings import Settings

DEMO_AUDIT = {"epochs": 15, "batch_size": 64, "inject_noise": "uniform:0.3"}


def register(commands: argparse._SubParsersAction) -> None:
    """Add the `up`, `worker`, `demo` and `create-key` commands to a parser's subcommands."""
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

    create_key = commands.add_parser(
        "create-key", help="create an API key for an owner (run where the service's database is)"
    )
    create_key.add_argument("--owner", required=True, help="owner name; created if missing")
    create_key.add_argument(
        "--reviewer", help="who uses the key, to tell an owner's reviewers apart (default: the owner)"
    )
    create_key.set_defaults(handler=create_key_command)


def worker_command(args: argparse.Namespace) -> int:
    from cli.stack import worker_arguments
    from core.settings import get_settings
    from worker.celery_app import app

    app.worker_main(worker_arguments(get_settings(), args.queues, args.concurrency, args.loglevel))
    return 0


def up_command(args: argparse.Namespace) -> int:
    from cli.stack import Stack
    from core.settings import get_settings

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


@reporting_service_errors
def demo_command(args: argparse.Namespace) -> int:
    from api.client import LilawClient
    from cli.stack import Stack, free_port
    from core.settings import get_settings

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
            print(
                f"job {job.id}: LiLAW audit, {args.epochs} epochs, {DEMO_AUDIT['inject_noise']} label noise injected"
            )
            status = report_job(client, follow_job(client, job.id, poll_seconds=1.0))
            if status == 0:
                print("\nTop 10 suspected mislabels (known_mislabeled: the label was flipped by the injected noise)")
                print_suspects(client, job.id, limit=10)
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


def create_key_command(args: argparse.Namespace) -> int:
    from api.auth import create_key_in_database
    from core.settings import get_settings

    key = create_key_in_database(get_settings(), args.owner, reviewer=args.reviewer)
    holder = repr(args.owner) if args.reviewer is None else f"{args.owner!r}, reviewer {args.reviewer!r}"
    print(f"API key for {holder}; it is shown only now:", file=sys.stderr)
    print(key)
    return 0
