"""The schema's Alembic migrations, and the functions that run them on a database: the API and
`lilaw-audit up` upgrade at startup, tests and benchmarks on their own databases. Alembic loads
env.py and versions/ from this package's directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, text

from core.store.db import make_engine

SCRIPT_LOCATION = Path(__file__).resolve().parent
MIGRATION_LOCK_KEY = 0x6C696C6177  # "lilaw": the advisory lock of schema migrations on Postgres


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    return config


def upgrade_database(url: str | URL, revision: str = "head") -> None:
    """Bring the schema at `url` up to `revision` (the newest by default)."""
    _run_migration(command.upgrade, url, revision)


def downgrade_database(url: str | URL, revision: str = "base") -> None:
    _run_migration(command.downgrade, url, revision)


def _run_migration(migrate: Any, url: str | URL, revision: str) -> None:
    """One migration at a time per database: several API processes start, and upgrade, at once.
    The second waits for the first (SQLite's write lock taken at BEGIN; a transaction-scoped
    advisory lock on Postgres), then finds the schema current."""
    config = alembic_config()
    engine = make_engine(url, sqlite_foreign_keys=False, sqlite_begin="IMMEDIATE")
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            migrate(config, revision)
    finally:
        engine.dispose()
