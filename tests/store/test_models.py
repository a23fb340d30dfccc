import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import REAL, Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError, InvalidRequestError
from sqlalchemy.orm import Session

from core.score_registry import SCORE_NAMES
from core.store import (
    ApiKey,
    AuditJob,
    Dataset,
    DatasetVersion,
    JobStatus,
    Owner,
    Sample,
    make_session_factory,
    session_scope,
)
from core.store.db import database_url, make_engine

SCORE_TABLE_KEYS = ["job_id", "sample_index", "rank", "default_score"]


def test_the_migrated_score_table_has_one_nullable_real_column_per_registry_score(engine):
    columns = inspect(engine).get_columns("sample_scores")

    assert [column["name"] for column in columns] == [*SCORE_TABLE_KEYS, *SCORE_NAMES]
    for column in columns[len(SCORE_TABLE_KEYS):]:
        assert column["nullable"] and isinstance(column["type"], REAL), column


def test_a_new_job_is_queued_with_utc_timestamps(session, make_job):
    job_id = make_job().id
    session.expire_all()

    job = session.get(AuditJob, job_id)

    assert job.status is JobStatus.QUEUED
    assert (job.epoch, job.step, job.config) == (0, 0, {"epochs": 2})
    assert job.created_at.tzinfo is UTC
    assert abs(datetime.now(UTC) - job.created_at) < timedelta(minutes=1)


def test_timestamps_round_trip_as_utc(session, make_job):
    job = make_job()
    heartbeat = datetime(2025, 3, 1, 12, 30, tzinfo=UTC) + timedelta(microseconds=5)
    job.heartbeat_at = heartbeat.astimezone(datetime.now().astimezone().tzinfo)
    session.flush()
    session.expire_all()

    assert session.get(AuditJob, job.id).heartbeat_at == heartbeat


def test_naive_timestamps_are_refused(session, make_job):
    job = make_job()
    job.started_at = datetime(2025, 3, 1, 12, 30)
    with pytest.raises(Exception, match="timezone-aware"):
        session.flush()


def test_relationships_never_load_lazily(session, make_job):
    job_id = make_job().id
    session.expire_all()
    job = session.get(AuditJob, job_id)

    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        job.dataset_version
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        session.get(Owner, job.owner_id).datasets


def test_job_status_outside_the_known_ones_is_refused(session, make_job):
    job = make_job()
    with pytest.raises(IntegrityError, match="ck_audit_jobs_status"), session.begin_nested():
        session.execute(text("UPDATE audit_jobs SET status = 'paused' WHERE id = :id"), {"id": job.id})


def test_sample_ids_are_unique_within_a_version(session, make_job):
    job = make_job(3)
    with pytest.raises(IntegrityError), session.begin_nested():
        session.add(Sample(dataset_version_id=job.dataset_version_id, sample_index=3, sample_id="s00001", label=0))


def test_api_keys_are_found_by_their_hash(session):
    key = f"lilaw_{uuid.uuid4().hex}"
    owner = Owner(name="team")
    session.add(ApiKey(owner=owner, prefix=key[:10], key_hash=hashlib.sha256(key.encode()).hexdigest()))
    session.flush()

    key_hash = hashlib.sha256(key.encode()).hexdigest()
    found = session.scalars(select(ApiKey).where(ApiKey.key_hash == key_hash)).one()

    assert (found.owner_id, found.prefix, found.revoked_at) == (owner.id, key[:10], None)


def test_deleting_an_owner_deletes_everything_they_own(session, make_job):
    job = make_job(5)
    other = make_job(5)
    session.add(ApiKey(owner_id=job.owner_id, prefix="lilaw_1234", key_hash="f" * 64))
    session.flush()
    owner_id, version_id = job.owner_id, job.dataset_version_id

    session.execute(Owner.__table__.delete().where(Owner.id == owner_id))

    def count(column, value) -> int:
        return session.scalar(select(func.count()).where(column == value))

    assert count(ApiKey.owner_id, owner_id) == 0
    assert count(Dataset.owner_id, owner_id) == 0
    assert count(DatasetVersion.id, version_id) == 0
    assert count(Sample.dataset_version_id, version_id) == 0
    assert count(AuditJob.owner_id, owner_id) == 0
    assert count(Sample.dataset_version_id, other.dataset_version_id) == 5


def test_session_scope_commits_once_or_rolls_back(engine: Engine):
    sessions = make_session_factory(engine)
    kept, dropped = f"kept-{uuid.uuid4().hex[:8]}", f"dropped-{uuid.uuid4().hex[:8]}"
    try:
        with session_scope(sessions) as session:
            session.add(Owner(name=kept))
        with pytest.raises(RuntimeError), session_scope(sessions) as session:
            session.add(Owner(name=dropped))
            session.flush()
            raise RuntimeError("task failed")

        with Session(engine) as session:
            names = set(session.scalars(select(Owner.name).where(Owner.name.in_([kept, dropped]))))
        assert names == {kept}
    finally:
        with session_scope(sessions) as session:
            session.execute(Owner.__table__.delete().where(Owner.name.in_([kept, dropped])))


def test_sqlite_connections_use_wal_foreign_keys_and_a_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'lilaw.db'}")
    with engine.connect() as connection:
        pragmas = [
            connection.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout")
        ]
    engine.dispose()

    assert pragmas == ["wal", 1, 30000]


def test_sqlite_transactions_roll_back_ddl_and_savepoints(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'lilaw.db'}")
    with engine.connect() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        nested = connection.begin_nested()
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        nested.rollback()
        connection.exec_driver_sql("INSERT INTO t VALUES (2)")
        assert connection.exec_driver_sql("SELECT x FROM t").scalars().all() == [2]
        connection.rollback()
        assert connection.exec_driver_sql("SELECT count(*) FROM sqlite_master WHERE name = 't'").scalar() == 0
    engine.dispose()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///data/lilaw.db", "sqlite:///data/lilaw.db"),
    ],
)
def test_database_urls_use_psycopg_for_postgres(given, expected):
    assert database_url(given).render_as_string() == expected
