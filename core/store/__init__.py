"""The database layer: schema, engines and sessions, bulk writers for audit results, and reads."""

from core.store.db import (
    as_connection,
    database_url,
    downgrade_database,
    make_engine,
    make_session_factory,
    session_scope,
    upgrade_database,
)
from core.store.dynamics_writer import metric_rows, write_epoch, write_metrics, write_scores, write_trajectory
from core.store.models import (
    ApiKey,
    AuditJob,
    Base,
    Dataset,
    DatasetVersion,
    Decision,
    JobMetric,
    JobStatus,
    LilawTrajectoryPoint,
    Owner,
    Sample,
    SampleEpoch,
    SampleScore,
)
from core.store.partitions import create_job_partition, delete_job, drop_job_dynamics
from core.store.queries import Suspect, sample_dynamics, top_suspects

__all__ = [
    "ApiKey",
    "AuditJob",
    "Base",
    "Dataset",
    "DatasetVersion",
    "Decision",
    "JobMetric",
    "JobStatus",
    "LilawTrajectoryPoint",
    "Owner",
    "Sample",
    "SampleEpoch",
    "SampleScore",
    "Suspect",
    "as_connection",
    "create_job_partition",
    "database_url",
    "delete_job",
    "downgrade_database",
    "drop_job_dynamics",
    "make_engine",
    "make_session_factory",
    "metric_rows",
    "sample_dynamics",
    "session_scope",
    "top_suspects",
    "upgrade_database",
    "write_epoch",
    "write_metrics",
    "write_scores",
    "write_trajectory",
]
