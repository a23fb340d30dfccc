"""One `sample_epochs` partition per job on Postgres, so that a job's dynamics are dropped whole.

On SQLite `sample_epochs` is a plain table: creating a partition does nothing and dropping a job's
dynamics deletes its rows.
"""

from __future__ import annotations

import operator

from sqlalchemy import Connection, delete, text
from sqlalchemy.orm import Session

from core.store.db import as_connection
from core.store.models import AuditJob, SampleEpoch


def partition_name(job_id: int) -> str:
    return f"sample_epochs_j{_job_id(job_id)}"


def create_job_partition(bind: Session | Connection, job_id: int) -> None:
    """Create the job's `sample_epochs` partition unless it exists (Postgres; no-op on SQLite)."""
    connection = as_connection(bind)
    if connection.dialect.name != "postgresql":
        return
    name = partition_name(job_id)
    if connection.scalar(text("SELECT to_regclass(:name)"), {"name": name}) is None:
        connection.exec_driver_sql(
            f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF sample_epochs FOR VALUES IN ({_job_id(job_id)})"
        )


def drop_job_dynamics(bind: Session | Connection, job_id: int) -> None:
    """Remove every `sample_epochs` row of the job: drop its partition on Postgres, delete on SQLite."""
    connection = as_connection(bind)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {partition_name(job_id)}")
    else:
        connection.execute(delete(SampleEpoch).where(SampleEpoch.job_id == job_id))


def delete_job(session: Session, job_id: int) -> bool:
    """Delete the job with its dynamics, scores, trajectory and metrics; False if there was no such job."""
    drop_job_dynamics(session, job_id)
    result = session.execute(delete(AuditJob).where(AuditJob.id == job_id))
    return result.rowcount > 0


def _job_id(job_id: int) -> int:
    value = operator.index(job_id)
    if value < 1:
        raise ValueError(f"job_id must be a positive integer, got {job_id!r}")
    return value
