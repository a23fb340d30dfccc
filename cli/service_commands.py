"""`lilaw-audit up`, `worker`, `demo` and `create-key`: run the service's processes, and create API
keys in its database.

- `up` starts the API (uvicorn), a Celery worker and beat as child processes of one command, on
  the configured database and broker: by default the embedded SQLite database and SQLAlchemy
  broker under the data dir. Ctrl-C stops them all; a job cut short resumes at the next start.
- `worker` runs just a worker (production: one per GPU, consuming the `audit` queue).
- `demo` starts the stack on a free port, audits the built-in digits with 30% injected label
  noise through the REST API, shows the progress, the top suspects and the detection metrics,
  and stops the stack. Its data stay in the data dir, where `up` serves them.
- `create-key` runs where the service's database is: with the embedded SQLite database, in the
  folder `up` ran in or with the same LILAW_DATA_DIR. It refuses to start a new database (whose
  keys the running service would reject) unless told to with --init; so does `keys list|create|revoke`, an
  owner's keys with their role, expiry and state (the API's /keys does the same over HTTP).

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
    create_key.add_argument(
        "--init", action="store_true",
        help="create the database if there is none in the data dir yet (before the first `up`)",
    )  # fmt: skip
    create_key.set_defaults(handler=create_key_command)
    _register_keys(commands)

    sweep = commands.add_parser(
        "sweep-blobs", help="remove orphan blobs and partial uploads (beat does it hourly; where the data dir is)"
    )
    sweep.add_argument("--grace-minutes", type=float, default=60.0, help="leave files younger than this (default 60)")
    sweep.set_defaults(handler=sweep_blobs_command)


def _register_keys(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="list, create or revoke an owner's API keys (where the database is)")
    actions = keys.add_subparsers(dest="keys_action", required=True)
    listing = actions.add_parser("list", help="the owner's keys: id, prefix, reviewer, role, expiry, state")
    listing.add_argument("--owner", required=True)
    listing.set_defaults(handler=keys_list_command)
    create = actions.add_parser("create", help="a new key, shown once")
    create.add_argument("--owner", required=True, help="owner name; created if missing")
    create.add_argument("--reviewer", help="who uses the key (default: the owner)")
    create.add_argument("--role", choices=("owner", "reviewer"), help="default: reviewer when --reviewer is given")
    create.add_argument("--expires-in-days", type=float, help="the key stops working after this many days")
    create.set_defaults(handler=keys_create_command)
    revoke = actions.add_parser("revoke", help="revoke a key (and end its review-page sessions)")
    revoke.add_argument("--owner", required=True)
    revoke.add_argument("key_id", type=int, help="the key's id, from `keys list`")
    revoke.set_defaults(handler=keys_revoke_command)


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
                f"Create an API key here, or elsewhere with LILAW_DATA_DIR={settings.data_dir.resolve()}:\n"
                f"  lilaw-audit create-key --owner NAME\n"
                f"Ctrl-C stops the API, the audit and webhook workers, and beat.\n",
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

    settings = get_settings()
    if not args.init:
        require_existing_database(settings)
    key = create_key_in_database(settings, args.owner, reviewer=args.reviewer)
    holder = repr(args.owner) if args.reviewer is None else f"{args.owner!r}, reviewer {args.reviewer!r}"
    print(f"API key for {holder} in {_database_shown(settings)}; it is shown only now:", file=sys.stderr)
    print(key)
    return 0


def require_existing_database(settings: Settings) -> None:
    """Refuse to create the embedded SQLite database: a key command run from another folder than
    `up` (the default data dir is ./lilaw-data) would otherwise start a new, empty one, and print
    a key the running service rejects."""
    from core.errors import ConfigError

    if settings.database_url is not None:
        return
    path = (settings.data_dir / "lilaw.sqlite").resolve()
    if not path.is_file():
        raise ConfigError(
            f"no LiLAW database in the data dir {settings.data_dir.resolve()} (looked for {path}). "
            "Run this in the folder where `lilaw-audit up` runs, or point it at the server's data dir "
            "(`up` prints it) with LILAW_DATA_DIR=/path/to/lilaw-data; --init creates a new database here"
        )


def _database_shown(settings: Settings) -> str:
    if settings.database_url is None:
        return f"the database of data dir {settings.data_dir.resolve()}"
    return "the database of DATABASE_URL"


def keys_list_command(args: argparse.Namespace) -> int:
    from api import auth
    from core.settings import get_settings
    from core.store.models import Owner, utcnow

    def rows(session) -> list[list[str]]:
        owner = session.query(Owner).filter_by(name=args.owner).one_or_none()
        keys = [] if owner is None else auth.list_api_keys(session, owner.id)
        now = utcnow()
        return [
            [
                str(key.id),
                key.prefix + "...",
                key.reviewer or "-",
                key.role,
                "-" if key.expires_at is None else key.expires_at.isoformat(timespec="seconds"),
                "revoked" if key.revoked_at else "expired" if key.expires_at and key.expires_at <= now else "active",
            ]
            for key in keys
        ]

    settings = get_settings()
    require_existing_database(settings)
    found = auth.in_database(settings, rows)
    if not found:
        print(f"no keys of owner {args.owner!r}", file=sys.stderr)
        return 0
    table = [["id", "prefix", "reviewer", "role", "expires", "state"], *found]
    widths = [max(len(row[column]) for row in table) for column in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def keys_create_command(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from api import auth
    from core.settings import get_settings
    from core.store.models import utcnow

    settings = get_settings()
    require_existing_database(settings)
    expires_at = None if args.expires_in_days is None else utcnow() + timedelta(days=args.expires_in_days)
    key = auth.in_database(
        settings,
        lambda session: auth.create_api_key(
            session, args.owner, reviewer=args.reviewer, role=args.role, expires_at=expires_at
        ),
    )
    print(f"API key for {args.owner!r}; it is shown only now:", file=sys.stderr)
    print(key)
    return 0


def keys_revoke_command(args: argparse.Namespace) -> int:
    from api import auth
    from core.settings import get_settings
    from core.store.models import Owner

    def revoke(session) -> None:
        owner = session.query(Owner).filter_by(name=args.owner).one_or_none()
        auth.revoke_api_key(session, -1 if owner is None else owner.id, args.key_id)

    settings = get_settings()
    require_existing_database(settings)
    auth.in_database(settings, revoke)
    print(f"key {args.key_id} of {args.owner!r} revoked", file=sys.stderr)
    return 0


def sweep_blobs_command(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from api.auth import in_database
    from core.services.blobs import BlobStore
    from core.settings import get_settings

    settings = get_settings()
    grace = timedelta(minutes=args.grace_minutes)
    report = in_database(settings, lambda session: BlobStore(settings).sweep_orphans(session, grace))
    print(f"removed {len(report.blobs)} orphan blobs and {len(report.partial_uploads)} partial uploads")
    return 0
