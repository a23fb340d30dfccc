import os
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from core.store import Base, make_engine
from migrations import downgrade_database, upgrade_database

BACKENDS = ("sqlite", "postgresql")
REPO_ROOT = Path(__file__).resolve().parents[2]
TABLES = {table.name for table in Base.metadata.sorted_tables}


def table_names(url) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_migrations_upgrade_downgrade_and_upgrade_again(make_database, backend):
    url = make_database(backend)
    environment = {**os.environ, "LILAW_DATABASE_URL": url}

    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=REPO_ROOT, env=environment, check=True, capture_output=True,
    )
    assert table_names(url) == TABLES | {"alembic_version"}

    downgrade_database(url)
    assert table_names(url) == {"alembic_version"}

    upgrade_database(url)
    upgrade_database(url)
    assert table_names(url) == TABLES | {"alembic_version"}


def test_models_match_the_migrations(engine: Engine):
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, Base.metadata)
    if engine.dialect.name == "sqlite":
        differences = _without_inline_foreign_keys(differences)
    assert differences == []


def _without_inline_foreign_keys(differences: list) -> list:
    """SQLite reflects a foreign key added in place (0003: `ADD COLUMN ... REFERENCES`) without
    its name and ON DELETE, so it reads as one key removed and an equal one added."""
    def key(constraint):
        return constraint.parent.name, tuple(column.name for column in constraint.columns), constraint.referred_table.name

    removed = {key(diff[1]) for diff in differences if diff[0] == "remove_fk" and diff[1].name is None}
    return [
        diff for diff in differences
        if not (diff[0] in ("remove_fk", "add_fk") and key(diff[1]) in removed)
    ]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_sample_epochs_is_list_partitioned_by_job_on_postgres(engine: Engine):
    with engine.connect() as connection:
        strategy = connection.scalar(
            text(
                "SELECT partstrat FROM pg_partitioned_table "
                "WHERE partrelid = 'sample_epochs'::regclass"
            )
        )
    assert strategy == "l"
