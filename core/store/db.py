"""Engines and sessions from a database URL (SQLite file or Postgres). The schema comes from the
migrations (`migrations.upgrade_database`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 30_000

SqliteBegin = Literal["DEFERRED", "IMMEDIATE"]


def database_url(url: str | URL) -> URL:
    """`url` with the driver this project uses: `postgresql://` and `postgres://` mean psycopg 3."""
    url = make_url(url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def make_engine(
    url: str | URL,
    *,
    sqlite_begin: SqliteBegin = "DEFERRED",
    sqlite_foreign_keys: bool = True,
    **kwargs: Any,
) -> Engine:
    """An engine for `url`. On SQLite every connection runs in WAL mode with foreign keys enforced
    and a busy timeout, and SQLAlchemy emits BEGIN itself so that transactions, savepoints and
    DDL behave as on Postgres. `sqlite_begin="IMMEDIATE"` takes the write lock at BEGIN, for
    processes whose transactions read before they write while another process writes.
    Migrations run with `sqlite_foreign_keys=False`: SQLite alters a table by copying and
    dropping it, and a DROP with foreign keys on would cascade into the referencing tables."""
    url = database_url(url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if sqlite_foreign_keys else 'OFF'}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_sqlite(connection: Connection) -> None:
        connection.exec_driver_sql(f"BEGIN {sqlite_begin}")

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def as_connection(bind: Session | Connection) -> Connection:
    """The connection a session or connection works in (a session begins its transaction)."""
    return bind.connection() if isinstance(bind, Session) else bind


@contextmanager
def session_scope(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is committed once when the block ends, or rolled back if it raises."""
    with sessions() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise

