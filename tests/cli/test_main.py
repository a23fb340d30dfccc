"""`lilaw-audit`'s parser: every command is there, and building it loads none of the service nor
torch and writes nothing, so that `--help` answers at once wherever it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli.main import build_parser
from core.audit_config import LilawConfig

LILAW_AUDIT = Path(sys.executable).parent / "lilaw-audit"
COMMANDS = (
    "audit", "up", "worker", "demo", "create-key", "keys", "sweep-blobs", "upload", "submit", "status", "suspects",
    "download", "cancel", "append", "reaudit", "report", "schedule", "download-dataset", "review",
)  # fmt: skip
HEAVY = ("torch", "sqlalchemy", "celery", "fastapi")


def default_environment() -> dict[str, str]:
    """The environment without the service's settings: the data dir is the default, ./lilaw-data."""
    service = ("LILAW_", "DATABASE_URL", "CELERY_BROKER_URL")
    return {name: value for name, value in os.environ.items() if not name.startswith(service)}


@pytest.mark.parametrize("command", [[str(LILAW_AUDIT)], [sys.executable, "-m", "cli"]], ids=["script", "module"])
def test_help_lists_the_commands_and_writes_nothing(tmp_path, command):
    run = subprocess.run(
        [*command, "--help"], cwd=tmp_path, env=default_environment(), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    listed = run.stdout.split("{", 1)[1].split("}", 1)[0].split(",")
    assert listed == list(COMMANDS)
    assert list(tmp_path.iterdir()) == []


def test_building_the_parser_loads_neither_torch_nor_the_service(tmp_path):
    probe = (
        "import json, sys; import cli.main; cli.main.build_parser(); "
        f"print(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}} & {set(HEAVY)!r})))"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=default_environment(), capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == []


def test_the_local_audit_command_parses_its_options():
    args = build_parser().parse_args(["audit", "digits", "--epochs", "2", "--out", "runs/x"])
    assert args.command == "audit" and args.epochs == 2 and args.meta_batch_size == LilawConfig.meta_batch_size
