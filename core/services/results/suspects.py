"""A job's ranked suspects and one sample's history.

Suspects come in pages ordered by the stored rank, by an aggregated score, or by one epoch's
score computed from `sample_epochs`; a page ends with an opaque cursor (`cursors`) that continues
the same ordering. A job with injected noise shows the given labels and flags of its labels file.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import BindParameter, ColumnElement, Select, and_, bindparam, case, cast, func, or_, select
from sqlalchemy.orm import Session

from core.audit import NoisyLabels
from core.audit_config import DEFAULT_SCORE
from core.score_registry import EPOCH_SCORE_NAMES, SCORE_BY_NAME, SCORE_NAMES, offered_score_names
from core.services import InvalidParameterError, NotFoundError
from core.services.artifacts import JobArtifacts
from core.services.results.cursors import decode_cursor, encode_cursor
from core.store.models import AuditJob, Sample, SampleEpoch, SampleScore
from core.store.queries import Suspect, epoch_score, last_epoch, sample_rows, suspect_from_row, suspects_select


@dataclass(frozen=True)
class RankedSuspect:
    suspect: Suspect
    score: float | None  # the value the page is ordered by


@dataclass(frozen=True)
class SuspectPage:
    suspects: list[RankedSuspect]
    next_cursor: str | None
    score: str
    epoch: int | None
    newest_epoch: int | None = None  # the job's newest stored epoch, as the page read it


@dataclass(frozen=True)
class SampleHistory:
    label: int  # the given label the job trained on
    is_mislabeled: bool | None
    sample: Sample
    score: SampleScore | None
    epochs: list[SampleEpoch]


def default_score(job: AuditJob) -> str:
    return job.config.get("default_score") or DEFAULT_SCORE


def suspects_page(
    session: Session,
    job: AuditJob,
    artifacts: JobArtifacts,
    *,
    limit: int,
    cursor: str | None = None,
    score: str | None = None,
    epoch: int | None = None,
    label: int | None = None,
    predicted: int | None = None,
    split: int | None = None,
    min_score: float | None = None,
    only: Collection[int] | None = None,
    excluding: Collection[int] = (),
) -> SuspectPage:
    """One page of the job's suspects, most suspicious first. Without `score` and `epoch` the
    order is the stored rank; `score` orders by that aggregated score; `epoch` by that epoch's
    score (the job's default score unless `score` names another). The prediction and split
    filters use the dynamics of the ordering epoch (the last one by default); `min_score` keeps
    the samples whose ordering value is at least that; `only` and `excluding` name sample indexes."""
    name = score or default_score(job)
    if name not in SCORE_NAMES:
        raise InvalidParameterError(f"unknown score {name!r}; scores are {', '.join(SCORE_NAMES)}")
    if not SCORE_BY_NAME[name].offered_by(job.config):
        raise InvalidParameterError(
            f"job {job.id} has no score {name!r}; its scores are {', '.join(offered_score_names(job.config))}"
        )
    by_rank = score is None and epoch is None
    order = "rank" if by_rank else f"{name}@{epoch or 'aggregate'}"
    after = decode_cursor(cursor, order)
    newest = last_epoch(session, job.id)
    if by_rank:
        key, dynamics_epoch = None, newest
    else:
        key, dynamics_epoch = _order_key(session, job, name, epoch, newest)
    statement = _suspects_statement(job, key, dynamics_epoch, after, limit + 1)
    labels = artifacts.read_labels()
    for condition in _suspect_conditions(
        labels, label, predicted, split, min_score, key, only=only, excluding=excluding
    ):
        statement = statement.where(condition)
    ranked = [
        RankedSuspect(with_job_labels(suspect, labels), suspect.default_score if by_rank else value)
        for suspect, value in _suspects(session, statement)
    ]
    page, rest = ranked[:limit], ranked[limit:]
    next_cursor = None
    if rest:
        last = page[-1]
        position = last.suspect.rank if by_rank else [last.score, last.suspect.sample_index]
        next_cursor = encode_cursor(order, position)
    return SuspectPage(suspects=page, next_cursor=next_cursor, score=name, epoch=epoch, newest_epoch=newest)


def sample_history(session: Session, job: AuditJob, sample_index: int, artifacts: JobArtifacts) -> SampleHistory:
    """The sample with its score and dynamics over the stored epochs: one statement
    (`queries.sample_rows`)."""
    rows = sample_rows(session, job, sample_index)
    if rows is None:
        raise NotFoundError(f"job {job.id} has no sample {sample_index}")
    sample = rows.sample
    labels = artifacts.read_labels()
    return SampleHistory(
        label=sample.label if labels is None else int(labels.labels[sample_index]),
        is_mislabeled=sample.is_mislabeled if labels is None else bool(labels.is_mislabeled[sample_index]),
        sample=sample,
        score=rows.score,
        epochs=rows.epochs,
    )


def count_suspects(
    session: Session,
    job: AuditJob,
    artifacts: JobArtifacts,
    *,
    label: int | None = None,
    split: int | None = None,
    min_score: float | None = None,
    only: Collection[int] | None = None,
    within: Mapping[str, Collection[int]] | None = None,
    newest_epoch: int | None = None,
) -> dict[str, int]:
    """How many of the job's samples pass the filters of `suspects_page` (in its default order):
    {"total": n}, plus for each named subset of `within` how many of those are in it, all counted
    by one statement. The split filter reads the newest epoch's dynamics: `newest_epoch` when the
    caller has it (a suspects page's), else read here."""
    parts = {name: func.count(case((SampleScore.sample_index.in_(_literal_list(indexes)), 1)))
             for name, indexes in (within or {}).items() if indexes}  # fmt: skip
    statement = select(func.count(), *parts.values()).select_from(SampleScore).where(SampleScore.job_id == job.id)
    if split is not None:  # the split is a field of the dynamics
        newest = newest_epoch if newest_epoch is not None else last_epoch(session, job.id)
        statement = statement.join(
            SampleEpoch,
            and_(
                SampleEpoch.job_id == job.id,
                SampleEpoch.epoch == newest,
                SampleEpoch.sample_index == SampleScore.sample_index,
            ),
        )
    labels = artifacts.read_labels()
    if label is not None and labels is None:
        statement = statement.join(
            Sample,
            and_(Sample.dataset_version_id == job.dataset_version_id, Sample.sample_index == SampleScore.sample_index),
        )
    for condition in _suspect_conditions(labels, label, None, split, min_score, None, only=only):
        statement = statement.where(condition)
    total, *counted = session.execute(statement).one()
    counts = dict(zip(parts, counted))
    return {"total": total, **{name: counts.get(name, 0) for name in within or {}}}


def with_job_labels(suspect: Suspect, labels: NoisyLabels | None) -> Suspect:
    """The suspect with the given label and flag the job trained on (its labels file's, if any)."""
    if labels is None:
        return suspect
    index = suspect.sample_index
    return replace(suspect, label=int(labels.labels[index]), is_mislabeled=bool(labels.is_mislabeled[index]))


def _order_key(
    session: Session, job: AuditJob, name: str, epoch: int | None, newest: int | None
) -> tuple[ColumnElement, int | None]:
    """The SQL expression a page is ordered by (higher = more suspicious) and the epoch whose
    dynamics go with each suspect (`newest`: the job's newest stored epoch)."""
    if epoch is None:
        return getattr(SampleScore, name), newest
    if name not in EPOCH_SCORE_NAMES:
        raise InvalidParameterError(
            f"score {name!r} has no per-epoch value; per-epoch scores are {', '.join(EPOCH_SCORE_NAMES)}"
        )
    recorded = session.scalar(
        select(SampleEpoch.epoch).where(SampleEpoch.job_id == job.id, SampleEpoch.epoch == epoch).limit(1)
    )
    if recorded is None:
        stored = "no epoch is stored yet" if newest is None else f"stored epochs end at {newest}"
        raise InvalidParameterError(f"epoch {epoch} of job {job.id} is not stored ({stored})")
    return epoch_score(name), epoch


def _suspects_statement(
    job: AuditJob, key: ColumnElement | None, dynamics_epoch: int | None, after, limit: int
) -> Select:
    """The job's suspects with their sample and the dynamics of `dynamics_epoch`: by rank when
    `key` is None (after rank `after`), else by `key` descending, NULL last, then by sample index
    (after the (key, sample_index) position `after`)."""
    value = key if key is not None else SampleScore.default_score
    statement = suspects_select(job.id, job.dataset_version_id, dynamics_epoch, value).limit(limit)
    if key is None:
        statement = statement.order_by(SampleScore.rank)
        return statement if after is None else statement.where(SampleScore.rank > after)
    statement = statement.order_by(key.desc().nulls_last(), SampleScore.sample_index)
    if after is None:
        return statement
    after_value, after_index = after
    later_index = SampleScore.sample_index > after_index
    if after_value is None:
        return statement.where(key.is_(None), later_index)
    # Compared in the column's type: Postgres reads REAL back as its shortest decimal, which
    # widened to double is not the stored value.
    after_key = cast(after_value, key.type)
    return statement.where(or_(key < after_key, and_(key == after_key, later_index), key.is_(None)))


def _suspects(session: Session, statement: Select) -> list[tuple[Suspect, float | None]]:
    return [(suspect_from_row(row), row[-1]) for row in session.execute(statement)]


def _suspect_conditions(
    labels: NoisyLabels | None,
    label: int | None,
    predicted: int | None,
    split: int | None,
    min_score: float | None,
    key: ColumnElement | None,
    *,
    only: Collection[int] | None,
    excluding: Collection[int] = (),
) -> list[ColumnElement[bool]]:
    conditions = []
    if label is not None:
        conditions.append(_label_condition(labels, label))
    if predicted is not None:
        conditions.append(SampleEpoch.predicted == predicted)
    if split is not None:
        conditions.append(SampleEpoch.split == split)
    if min_score is not None:
        value = SampleScore.default_score if key is None else key
        conditions.append(value >= cast(min_score, value.type))
    if only is not None:
        conditions.append(SampleScore.sample_index.in_(_literal_list(only)))
    if excluding:
        conditions.append(SampleScore.sample_index.not_in(_literal_list(excluding)))
    return conditions


def _literal_list(indexes: Collection[int]) -> BindParameter:
    """Sample indexes rendered into the statement, so that any number fits (a statement takes at
    most 32,766 parameters on SQLite, 65,535 on Postgres)."""
    return bindparam("indexes", [int(index) for index in indexes], expanding=True, literal_execute=True, unique=True)


def _label_condition(labels: NoisyLabels | None, label: int) -> ColumnElement[bool]:
    if labels is None:
        return Sample.label == label
    return SampleScore.sample_index.in_(np.flatnonzero(labels.labels == label).tolist())
