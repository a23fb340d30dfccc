"""`lilaw-audit`: one parser for every command. Building it imports neither torch nor the service
(SQLAlchemy, Celery, FastAPI), so that `--help` answers at once and a command loads only what it
runs."""

from __future__ import annotations

import argparse
import sys

from cli import audit_commands, client_commands, service_commands
from core.errors import AuditError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lilaw-audit", description="Find mislabeled samples with LiLAW.")
    commands = parser.add_subparsers(dest="command", required=True)
    audit_commands.register(commands)
    service_commands.register(commands)
    client_commands.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except AuditError as error:
        print(f"error: {error.message}", file=sys.stderr)
        return 2
