"""A job's downloads: the score table (streamed in chunks, for CSV or Parquet) and the trained
model's file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from core.dynamics import SPLIT_NAMES
from core.score_registry import offered_score_names
from core.services import NotFoundError
from core.services.artifacts import JobArtifacts
from core.services.results.suspects import with_job_labels
from core.store.models import AuditJob
from core.store.queries import Suspect, top_suspects

SCORE_TABLE_CHUNK = 5_000


def score_table_columns(job: AuditJob) -> list[str]:
    """Header of the job's score table: sample, labels, split, the scores it has, the known flag."""
    names = list(offered_score_names(job.config))
    return [
        "rank",
        "sample_index",
        "sample_id",
        "given_label",
        "predicted_label",
        "split",
        "default_score",
        *names,
        "known_mislabeled",
    ]


def score_table_chunks(
    sessions: sessionmaker[Session], job: AuditJob, class_names: list[str], artifacts: JobArtifacts
) -> Iterator[list[dict]]:
    """The job's score table in rank order, in chunks of rows (dicts keyed by
    `score_table_columns`), each chunk read in its own short transaction."""
    columns = score_table_columns(job)
    labels = artifacts.read_labels()
    after = None
    while True:
        with sessions() as session:
            chunk = top_suspects(session, job.id, limit=SCORE_TABLE_CHUNK, after_rank=after)
        if not chunk:
            return
        yield [_score_row(with_job_labels(suspect, labels), class_names, columns) for suspect in chunk]
        after = chunk[-1].rank


def model_path(job: AuditJob, artifacts: JobArtifacts) -> Path:
    """The trained model's file, as the worker saved it."""
    path = artifacts.model_file()
    if path is None:
        raise NotFoundError(f"job {job.id} has no trained model")
    return path


def _score_row(suspect: Suspect, class_names: list[str], columns: list[str]) -> dict:
    row = {
        "rank": suspect.rank,
        "sample_index": suspect.sample_index,
        "sample_id": suspect.sample_id,
        "given_label": class_names[suspect.label],
        "predicted_label": None if suspect.predicted is None else class_names[suspect.predicted],
        "split": None if suspect.split is None else SPLIT_NAMES[suspect.split],
        "default_score": suspect.default_score,
        "known_mislabeled": suspect.is_mislabeled,
        **suspect.scores,
    }
    return {column: row[column] for column in columns}
