"""Writes what an audit produces: per-epoch dynamics, the α/β/δ trajectory, scores and metrics.

Every writer replaces what it writes (a redelivered epoch or a retried job never duplicates rows)
and runs in the caller's transaction: pass a Session or a Connection and commit once afterwards,
so the delete and the insert land together or not at all. Postgres rows go in by binary COPY,
SQLite rows by executemany.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.orm import Session

from core.dynamics import FLOAT_FIELDS, OPTIONAL_FLOAT_FIELDS, EpochDynamics
from core.score_registry import SCORE_NAMES
from core.store.bulk import insert_columns
from core.store.db import as_connection
from core.store.models import AuditJob, JobMetric, LilawTrajectoryPoint, SampleEpoch, SampleScore
from core.store.partitions import create_job_partition, partition_name

TRAJECTORY_COLUMNS = ("step", "epoch", "alpha", "beta", "delta")
METRIC_VALUES = ("auroc", "auprc_mislabeled", "auprc_clean", "precision_at_k", "recall_at_k", "num_mislabeled")
METRIC_FIELDS = ("score", "epoch", "split", *METRIC_VALUES)


def write_epoch(bind: Session | Connection, job_id: int, dynamics: EpochDynamics) -> int:
    """Store one epoch of a job's dynamics, replacing any rows of that epoch; returns the row count.
    An optional field the epoch lacks (`fbr_agreement` of a run without FBR) is stored as NULL."""
    columns = {
        "sample_index": dynamics.sample_index,
        "split": dynamics.split,
        **{name: getattr(dynamics, name) for name in FLOAT_FIELDS},
        "predicted": dynamics.predicted,
        # Fields this run did not record are left out: NULL.
        **{name: getattr(dynamics, name) for name in OPTIONAL_FLOAT_FIELDS if getattr(dynamics, name) is not None},
    }
    _check_lengths(columns, len(dynamics))
    job_id, epoch = int(job_id), int(dynamics.epoch)
    connection = as_connection(bind)
    _lock_job(connection, job_id)
    create_job_partition(connection, job_id)
    connection.execute(delete(SampleEpoch).where(SampleEpoch.job_id == job_id, SampleEpoch.epoch == epoch))
    return insert_columns(connection, SampleEpoch.__table__, {"job_id": job_id, "epoch": epoch, **columns})


def write_trajectory(bind: Session | Connection, job_id: int, trajectory: np.ndarray) -> int:
    """Store α/β/δ points, `trajectory` [S, 5] with columns step, epoch, alpha, beta, delta (as in
    `core.audit.AuditResult.trajectory`), replacing the job's points of the epochs it contains."""
    points = np.asarray(trajectory, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != len(TRAJECTORY_COLUMNS):
        columns = ", ".join(TRAJECTORY_COLUMNS)
        raise ValueError(f"trajectory must have shape [S, 5] ({columns}), got {points.shape}")
    epochs = np.unique(points[:, 1]).astype(np.int64).tolist()
    connection = as_connection(bind)
    connection.execute(
        delete(LilawTrajectoryPoint).where(
            LilawTrajectoryPoint.job_id == job_id, LilawTrajectoryPoint.epoch.in_(epochs)
        )
    )
    if not len(points):
        return 0
    return insert_columns(
        connection,
        LilawTrajectoryPoint.__table__,
        {"job_id": job_id, **{name: points[:, i] for i, name in enumerate(TRAJECTORY_COLUMNS)}},
    )


def write_scores(
    bind: Session | Connection,
    job_id: int,
    scores: Mapping[str, np.ndarray],
    default_score: np.ndarray,
    rank: np.ndarray,
) -> int:
    """Store every sample's scores, replacing the job's previous ones. Arrays are indexed by
    sample_index (0..N-1); `scores` keys are names from `SCORE_NAMES` (missing ones stay NULL);
    `rank` is unique, 1 = most suspicious.

    Scores come last in a job, so on Postgres this also refreshes the planner statistics of the
    job's freshly loaded rows; without them `top_suspects` can be planned as a quadratic join."""
    unknown = sorted(set(scores) - set(SCORE_NAMES))
    if unknown:
        raise ValueError(f"unknown score names {unknown}; known: {', '.join(SCORE_NAMES)}")
    num_samples = len(rank)
    columns = {"rank": rank, "default_score": default_score, **scores}
    _check_lengths(columns, num_samples)
    connection = as_connection(bind)
    connection.execute(delete(SampleScore).where(SampleScore.job_id == job_id))
    written = insert_columns(
        connection,
        SampleScore.__table__,
        {"job_id": job_id, "sample_index": np.arange(num_samples), **columns},
    )
    if connection.dialect.name == "postgresql":
        create_job_partition(connection, job_id)
        connection.exec_driver_sql(f"ANALYZE samples, sample_scores, {partition_name(job_id)}")
    return written


def write_metrics(bind: Session | Connection, job_id: int, metrics: Iterable[Mapping[str, Any]]) -> int:
    """Store detection metrics, replacing the job's previous ones. Each row maps `METRIC_FIELDS`
    to values: `score` is required, `epoch` None means aggregated over epochs, `split` defaults
    to 'all'; NaN becomes NULL."""
    rows = [_metric_row(job_id, metric) for metric in metrics]
    connection = as_connection(bind)
    connection.execute(delete(JobMetric).where(JobMetric.job_id == job_id))
    if rows:
        connection.execute(insert(JobMetric), rows)
    return len(rows)


def metric_rows(detection: Mapping[str, Any]) -> list[dict[str, Any]]:
    """`write_metrics` rows from `core.audit.detection_summary` output: its "aggregate" and
    "aggregate_train_only" reports (epoch None, split 'all' / 'train') and "per_epoch" reports."""
    sections = [
        (None, "all", detection.get("aggregate", {})),
        (None, "train", detection.get("aggregate_train_only", {})),
        *((int(epoch), "all", report) for epoch, report in detection.get("per_epoch", {}).items()),
    ]
    return [
        {"score": score, "epoch": epoch, "split": split, **{name: values.get(name) for name in METRIC_VALUES}}
        for epoch, split, report in sections
        for score, values in report.items()
    ]


def _metric_row(job_id: int, metric: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(metric) - set(METRIC_FIELDS))
    if unknown:
        raise ValueError(f"unknown metric fields {unknown}; known: {', '.join(METRIC_FIELDS)}")
    if not metric.get("score"):
        raise ValueError("a metric row needs a score name")
    return {
        "job_id": job_id,
        "score": str(metric["score"]),
        "epoch": None if metric.get("epoch") is None else int(metric["epoch"]),
        "split": str(metric.get("split") or "all"),
        "auroc": _number(metric.get("auroc")),
        "auprc_mislabeled": _number(metric.get("auprc_mislabeled")),
        "auprc_clean": _number(metric.get("auprc_clean")),
        "precision_at_k": _at_k(metric.get("precision_at_k")),
        "recall_at_k": _at_k(metric.get("recall_at_k")),
        "num_mislabeled": None if metric.get("num_mislabeled") is None else int(metric["num_mislabeled"]),
    }


def _number(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _at_k(values: Mapping[Any, Any] | None) -> dict[str, float | None] | None:
    if values is None:
        return None
    return {str(k): _number(v) for k, v in values.items()}


def _lock_job(connection: Connection, job_id: int) -> None:
    """Check that the job exists and keep it from being deleted until the transaction ends: the
    one check that stands in for a foreign key on `sample_epochs`."""
    statement = select(AuditJob.id).where(AuditJob.id == job_id).with_for_update(read=True, key_share=True)
    if connection.scalar(statement) is None:
        raise LookupError(f"audit job {job_id} does not exist")


def _check_lengths(columns: Mapping[str, Any], expected: int) -> None:
    wrong = {name: np.shape(values) for name, values in columns.items() if np.shape(values) != (expected,)}
    if wrong:
        raise ValueError(f"expected arrays of shape ({expected},); got {wrong}")
