"""Reads the API serves: a job's ranked suspects, samples' dynamics over epochs and one epoch's
scores as SQL expressions.

They stay cheap however large the job: suspects walk the (job_id, rank) index and look up each
row's sample and last-epoch dynamics by primary key; a sample's dynamics are one primary-key
lookup per epoch, read with its sample and score rows in one statement (`sample_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Row, Select, and_, false, func, select
from sqlalchemy.orm import Session

from core.score_registry import SCORE_BY_NAME
from core.store.models import AuditJob, Sample, SampleEpoch, SampleScore


@dataclass(frozen=True)
class Suspect:
    """A sample of a job's ranked list with what a reviewer needs: its given label, the model's
    label and confidence at the last stored epoch (None before any epoch is stored) and its scores."""

    rank: int
    sample_index: int
    sample_id: str
    label: int
    is_mislabeled: bool | None
    default_score: float
    predicted: int | None
    p_label: float | None
    p_max: float | None
    split: int | None
    scores: dict[str, float | None]


def last_epoch(session: Session, job_id: int) -> int | None:
    """The newest epoch with stored dynamics for the job."""
    return session.scalar(select(func.max(SampleEpoch.epoch)).where(SampleEpoch.job_id == job_id))


def epoch_score(name: str) -> ColumnElement:
    """Score `name` at one epoch as an expression over a `sample_epochs` row, higher = more
    suspicious: its dynamics field with its sign, as `core.scores.epoch_scores` computes it.

    Raw, not split-calibrated: `AuditConfig.split_calibration` calibrates the aggregated scores
    before they are stored in `sample_scores`, which the default ranking reads. Calibrating one
    epoch would rank by `percent_rank() OVER (PARTITION BY split ORDER BY <this expression>)`
    over the job's rows of that epoch: a window over the whole epoch, not a per-row expression."""
    score = SCORE_BY_NAME[name]
    if score.epoch_field is None:
        raise ValueError(f"score {name!r} has no per-epoch form")
    return score.apply_sign(getattr(SampleEpoch, score.epoch_field))


def suspects_select(job_id: int, version_id: int, dynamics_epoch: int | None, *extra: ColumnElement) -> Select:
    """A job's score rows joined with their sample and their dynamics at `dynamics_epoch` (NULLs
    when that epoch has none), plus `extra` columns; rows become `Suspect`s with `suspect_from_row`.
    Callers add the ordering, the page limit and filters."""
    return (
        select(
            SampleScore,
            Sample.sample_id,
            Sample.label,
            Sample.is_mislabeled,
            SampleEpoch.predicted,
            SampleEpoch.p_label,
            SampleEpoch.p_max,
            SampleEpoch.split,
            *extra,
        )
        .join(
            Sample,
            and_(Sample.dataset_version_id == version_id, Sample.sample_index == SampleScore.sample_index),
        )
        .outerjoin(
            SampleEpoch,
            and_(
                SampleEpoch.job_id == job_id,
                SampleEpoch.epoch == dynamics_epoch,
                SampleEpoch.sample_index == SampleScore.sample_index,
            ),
        )
        .where(SampleScore.job_id == job_id)
    )


def suspect_from_row(row: Row) -> Suspect:
    score, sample_id, label, is_mislabeled, predicted, p_label, p_max, split = row[:8]
    return Suspect(
        rank=score.rank,
        sample_index=score.sample_index,
        sample_id=sample_id,
        label=label,
        is_mislabeled=is_mislabeled,
        default_score=score.default_score,
        predicted=predicted,
        p_label=p_label,
        p_max=p_max,
        split=split,
        scores=score.scores(),
    )


def top_suspects(
    session: Session,
    job_id: int,
    *,
    limit: int,
    after_rank: int | None = None,
    label: int | None = None,
    predicted: int | None = None,
    split: int | None = None,
) -> list[Suspect]:
    """The job's samples in rank order (most suspicious first), at most `limit`, starting after
    rank `after_rank` (the last rank of the previous page), optionally only those with the given
    label, last-epoch prediction or split (`core.dynamics.SPLIT_TRAIN` / `SPLIT_VAL`)."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    version_id = session.scalar(select(AuditJob.dataset_version_id).where(AuditJob.id == job_id))
    if version_id is None:
        return []
    statement = suspects_select(job_id, version_id, last_epoch(session, job_id)).order_by(SampleScore.rank).limit(limit)
    if after_rank is not None:
        statement = statement.where(SampleScore.rank > after_rank)
    if label is not None:
        statement = statement.where(Sample.label == label)
    if predicted is not None:
        statement = statement.where(SampleEpoch.predicted == predicted)
    if split is not None:
        statement = statement.where(SampleEpoch.split == split)
    return [suspect_from_row(row) for row in session.execute(statement)]


def sample_dynamics(session: Session, job_id: int, sample_index: int) -> list[SampleEpoch]:
    """The sample's dynamics rows of every stored epoch of the job, oldest first."""
    epoch = last_epoch(session, job_id)
    if epoch is None:
        return []
    statement = select(SampleEpoch).where(_epochs_of_sample(job_id, sample_index, epoch)).order_by(SampleEpoch.epoch)
    return list(session.scalars(statement))


@dataclass(frozen=True)
class SampleRows:
    """One sample of a job: its row, its score row (None before the job is scored) and its
    dynamics rows of every stored epoch, oldest first."""

    sample: Sample
    score: SampleScore | None
    epochs: list[SampleEpoch]


def sample_rows(session: Session, job: AuditJob, sample_index: int) -> SampleRows | None:
    """The sample of the job's version with its score and dynamics, read by one statement (the
    newest stored epoch is read first only for a job that does not know its epoch count); None
    when the version has no such sample. Every epoch a job stores is one of 1..`total_epochs`
    (its config's epochs, set when the job is made), so the dynamics are looked up by primary key
    for each of those epochs; epochs not stored yet find nothing."""
    epochs = job.total_epochs if job.total_epochs is not None else last_epoch(session, job.id)
    score_of_sample = and_(SampleScore.job_id == job.id, SampleScore.sample_index == Sample.sample_index)
    dynamics = _epochs_of_sample(job.id, sample_index, epochs) if epochs else false()  # none stored yet
    statement = (
        select(Sample, SampleScore, SampleEpoch)
        .outerjoin(SampleScore, score_of_sample)
        .outerjoin(SampleEpoch, dynamics)
        .where(Sample.dataset_version_id == job.dataset_version_id, Sample.sample_index == sample_index)
        .order_by(SampleEpoch.epoch)
    )
    rows = session.execute(statement).all()
    if not rows:
        return None
    sample, score, _ = rows[0]
    return SampleRows(sample=sample, score=score, epochs=[epoch for _, _, epoch in rows if epoch is not None])


def _epochs_of_sample(job_id: int, sample_index: int, epochs: int) -> ColumnElement[bool]:
    """The sample's `sample_epochs` rows of epochs 1..`epochs`: one primary-key probe each
    (job_id, epoch, sample_index), where `sample_index` alone would scan the job's rows."""
    return and_(
        SampleEpoch.job_id == job_id,
        SampleEpoch.epoch.in_(range(1, epochs + 1)),
        SampleEpoch.sample_index == sample_index,
    )


WEIGHT_FIELDS = ("w_alpha", "w_beta", "w_delta")


def weight_histories(
    session: Session, job_id: int, sample_indexes: list[int], newest_epoch: int | None
) -> dict[int, dict[str, list]]:
    """W_alpha, W_beta and W_delta of the samples at every stored epoch of the job, by sample
    index: {"epoch": [...], "w_alpha": [...], ...}, oldest epoch first. `newest_epoch` is the
    job's `last_epoch`, which the caller has read already (the suspects page it shows did)."""
    epoch = newest_epoch
    if epoch is None or not sample_indexes:
        return {}
    statement = (
        select(SampleEpoch.sample_index, SampleEpoch.epoch, *(getattr(SampleEpoch, name) for name in WEIGHT_FIELDS))
        .where(
            SampleEpoch.job_id == job_id,
            SampleEpoch.epoch.in_(range(1, epoch + 1)),
            SampleEpoch.sample_index.in_(sample_indexes),
        )
        .order_by(SampleEpoch.sample_index, SampleEpoch.epoch)
    )
    histories: dict[int, dict[str, list]] = {}
    for sample_index, *values in session.execute(statement):
        history = histories.setdefault(sample_index, {name: [] for name in ("epoch", *WEIGHT_FIELDS)})
        for name, value in zip(("epoch", *WEIGHT_FIELDS), values):
            history[name].append(value)
    return histories
