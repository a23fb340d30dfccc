"""Alembic environment. The database is, in order of precedence: a connection handed over by
`migrations.upgrade_database` (config.attributes["connection"]), the LILAW_DATABASE_URL
environment variable, or `sqlalchemy.url` in alembic.ini."""

import os
import re
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from core.store.db import make_engine
from core.store.models import Base

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

JOB_PARTITION = re.compile(r"sample_epochs_j\d+$")


def include_object(object_, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "table" and name is not None and JOB_PARTITION.match(name))


def database_url() -> str:
    url = os.environ.get("LILAW_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set LILAW_DATABASE_URL or sqlalchemy.url in alembic.ini")
    return url


def run_migrations(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        include_object=include_object,
        render_as_batch=sqlite,
        transactional_ddl=True if sqlite else None,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url=database_url(),
        target_metadata=Base.metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    engine = make_engine(database_url(), sqlite_foreign_keys=False)
    try:
        with engine.connect() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
