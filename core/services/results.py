"""What a finished (or running) job shows: ranked suspects in any score's order, one sample's
dynamics, detection metrics against the known flags (stored; recomputed on request, or when
reviewers' decisions changed the known flags), the score table for downloads and the trained
model's file.

Scores are oriented higher = more suspicious (`core.scores`). Suspects come in pages ordered by
the stored rank, by an aggregated score, or by one epoch's score computed from `sample_epochs`;
a page ends with an opaque cursor that continues the same ordering.

A job with injected noise trained on other labels than its dataset version's: its given labels
and known flags are those of its labels file (`result_paths["labels"]`, written by the worker).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sqlalchemy import BindParameter, ColumnElement, Select, and_, bindparam, cast, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from core.audit import DEFAULT_SCORE, detection_summary
from core.dynamics import FLOAT_FIELDS, SPLIT_NAMES, DynamicsHistory
from core.metrics import detection_curves, score_histogram
from core.scores import CLEANLAB_SCORE_NAMES, EPOCH_SCORE_NAMES, ORIENTATION, SCORE_NAMES
from core.services import ConflictError, InvalidParameterError, NotFoundError, decisions
from core.services.job_files import JobLabels, job_file, job_labels
from core.store.dynamics_writer import metric_rows, write_metrics
from core.store.models import AuditJob, JobMetric, JobStatus, Sample, SampleEpoch, SampleScore
from core.store.queries import Suspect, last_epoch, sample_dynamics, suspect_from_row, suspects_select, top_suspects

# The `sample_epochs` column each per-epoch score is computed from; ORIENTATION's sign turns it
# into higher = more suspicious, as `core.scores.epoch_scores` does.
EPOCH_SCORE_COLUMNS = {
    "w_alpha": "w_alpha",
    "w_beta": "w_beta",
    "w_delta": "w_delta",
    "w": "w",
    "aum": "margin",
    "datamaps_confidence": "p_label",
    "el2n": "el2n",
    "loss": "loss",
}
SCORE_TABLE_CHUNK = 5_000


class NoKnownFlagsError(ConflictError):
    """No sample of the job has a known flag to measure detection against."""


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


@dataclass(frozen=True)
class DetectionCharts:
    score: str  # the job's default score
    suspicious_when: str  # "low" or "high": which values of its raw quantity are suspicious
    flags_source: str
    num_known: int
    num_mislabeled: int
    histogram: dict  # core.metrics.score_histogram of the raw quantity
    curves: dict[str, dict]  # core.metrics.detection_curves by score; none without both classes


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
    data_dir: Path,
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
    by_rank = score is None and epoch is None
    order = "rank" if by_rank else f"{name}@{epoch or 'aggregate'}"
    after = _decode_cursor(cursor, order)
    if by_rank:
        key, dynamics_epoch = None, last_epoch(session, job.id)
    else:
        key, dynamics_epoch = _order_key(session, job, name, epoch)
    statement = _suspects_statement(job, key, dynamics_epoch, after, limit + 1)
    labels = job_labels(job, data_dir)
    for condition in _suspect_conditions(
        labels, label, predicted, split, min_score, key, only=only, excluding=excluding
    ):
        statement = statement.where(condition)
    ranked = [
        RankedSuspect(_with_job_labels(suspect, labels), suspect.default_score if by_rank else value)
        for suspect, value in _suspects(session, statement)
    ]
    page, rest = ranked[:limit], ranked[limit:]
    next_cursor = None
    if rest:
        last = page[-1]
        position = last.suspect.rank if by_rank else [last.score, last.suspect.sample_index]
        next_cursor = _encode_cursor(order, position)
    return SuspectPage(suspects=page, next_cursor=next_cursor, score=name, epoch=epoch)


def sample_history(session: Session, job: AuditJob, sample_index: int, data_dir: Path) -> SampleHistory:
    sample = session.get(Sample, (job.dataset_version_id, sample_index))
    if sample is None:
        raise NotFoundError(f"job {job.id} has no sample {sample_index}")
    labels = job_labels(job, data_dir)
    return SampleHistory(
        label=sample.label if labels is None else int(labels.labels[sample_index]),
        is_mislabeled=sample.is_mislabeled if labels is None else bool(labels.is_mislabeled[sample_index]),
        sample=sample,
        score=session.get(SampleScore, (job.id, sample_index)),
        epochs=sample_dynamics(session, job.id, sample_index),
    )


def count_suspects(
    session: Session,
    job: AuditJob,
    data_dir: Path,
    *,
    label: int | None = None,
    split: int | None = None,
    min_score: float | None = None,
    only: Collection[int] | None = None,
) -> int:
    """How many of the job's samples pass the filters of `suspects_page` (in its default order)."""
    statement = (
        select(func.count())
        .select_from(SampleScore)
        .outerjoin(
            SampleEpoch,
            and_(
                SampleEpoch.job_id == job.id,
                SampleEpoch.epoch == last_epoch(session, job.id),
                SampleEpoch.sample_index == SampleScore.sample_index,
            ),
        )
        .where(SampleScore.job_id == job.id)
    )
    labels = job_labels(job, data_dir)
    if label is not None and labels is None:
        statement = statement.join(
            Sample,
            and_(Sample.dataset_version_id == job.dataset_version_id, Sample.sample_index == SampleScore.sample_index),
        )
    for condition in _suspect_conditions(labels, label, None, split, min_score, None, only=only):
        statement = statement.where(condition)
    return session.scalar(statement)


def job_metrics(session: Session, job_id: int) -> list[JobMetric]:
    statement = (
        select(JobMetric)
        .where(JobMetric.job_id == job_id)
        .order_by(JobMetric.score, JobMetric.epoch.nulls_first(), JobMetric.split)
    )
    return list(session.scalars(statement))


def current_metrics(session: Session, job: AuditJob, data_dir: Path) -> list[JobMetric]:
    """The job's detection metrics, first recomputed if reviewers' decisions were made or undone
    since they were computed (not for a job with injected noise: its flags are the injected ones).
    Concurrent readers recompute one after the other, holding the job row."""
    if _decided_since_metrics(session, job):
        session.scalar(select(AuditJob.id).where(AuditJob.id == job.id).with_for_update())
        if _decided_since_metrics(session, job):
            try:
                recompute_metrics(session, job, data_dir)
            except NoKnownFlagsError:
                write_metrics(session, job.id, [])
    return job_metrics(session, job.id)


def recompute_metrics(session: Session, job: AuditJob, data_dir: Path) -> None:
    """Replace the job's detection metrics with those against the current known flags (the dataset
    version's, overridden by reviewers' decisions; the injected ones for a job with injected
    noise), from the stored scores and dynamics. Samples without a known flag are left out."""
    if job.status is not JobStatus.SUCCEEDED:
        raise ConflictError(f"job {job.id} is {job.status.value}; metrics are recomputed for succeeded jobs")
    known, flags = _known_flags(session, job, data_dir)
    if not known.any():
        raise NoKnownFlagsError("no sample of this dataset version has a known flag; upload flags or review first")
    scores = _stored_scores(session, job.id)
    history = _stored_history(session, job.id, len(flags))
    detection = detection_summary(
        _history_subset(history, known),
        {name: values[known] for name, values in scores.items()},
        flags[known],
        history.split[known],
    )
    write_metrics(session, job.id, metric_rows(detection))


def detection_charts(session: Session, job: AuditJob, data_dir: Path, *, bins: int, max_points: int) -> DetectionCharts:
    """The histogram of the job's default score (as its raw quantity, e.g. mean W_alpha) apart
    for known mislabeled, known clean and unknown samples, and every score's ROC and
    precision-recall curves against the known flags."""
    require_scores(session, job)
    scores = _stored_scores(session, job.id)
    known, flags = _known_flags(session, job, data_dir)
    name = default_score(job)
    raw = -scores[name] if ORIENTATION[name]["sign"] == "-" else scores[name]
    curves = {}
    for score_name, values in scores.items():
        found = detection_curves(values[known], flags[known], max_points) if known.any() else None
        if found is not None:
            curves[score_name] = found
    noise = job.config.get("inject_noise")
    return DetectionCharts(
        score=name,
        suspicious_when="low" if ORIENTATION[name]["sign"] == "-" else "high",
        flags_source=f"injected noise ({noise})" if noise else "uploaded flags and reviewers' decisions",
        num_known=int(known.sum()),
        num_mislabeled=int(flags[known].sum()),
        histogram=score_histogram(raw, flags, known, bins),
        curves=curves,
    )


def require_scores(session: Session, job: AuditJob) -> None:
    if session.scalar(select(SampleScore.rank).where(SampleScore.job_id == job.id).limit(1)) is None:
        raise ConflictError(f"job {job.id} has no scores yet (it is {job.status.value})")


def score_table_columns(job: AuditJob) -> list[str]:
    """Header of the job's score table: sample, labels, split, the scores it has, the known flag."""
    names = [name for name in SCORE_NAMES if job.config.get("cross_fit") or name not in CLEANLAB_SCORE_NAMES]
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
    sessions: sessionmaker[Session], job: AuditJob, class_names: list[str], data_dir: Path
) -> Iterator[list[dict]]:
    """The job's score table in rank order, in chunks of rows (dicts keyed by
    `score_table_columns`), each chunk read in its own short transaction."""
    columns = score_table_columns(job)
    labels = job_labels(job, data_dir)
    after = None
    while True:
        with sessions() as session:
            chunk = top_suspects(session, job.id, limit=SCORE_TABLE_CHUNK, after_rank=after)
        if not chunk:
            return
        yield [_score_row(_with_job_labels(suspect, labels), class_names, columns) for suspect in chunk]
        after = chunk[-1].rank


def model_path(job: AuditJob, data_dir: Path) -> Path:
    """The trained model's file, as the worker saved it."""
    path = job_file(job, "model", data_dir)
    if path is None or not path.is_file():
        raise NotFoundError(f"job {job.id} has no trained model")
    return path


def _order_key(session: Session, job: AuditJob, name: str, epoch: int | None) -> tuple[ColumnElement, int | None]:
    """The SQL expression a page is ordered by (higher = more suspicious) and the epoch whose
    dynamics go with each suspect."""
    newest = last_epoch(session, job.id)
    if epoch is None:
        return getattr(SampleScore, name), newest
    if name not in EPOCH_SCORE_COLUMNS:
        raise InvalidParameterError(
            f"score {name!r} has no per-epoch value; per-epoch scores are {', '.join(EPOCH_SCORE_NAMES)}"
        )
    recorded = session.scalar(
        select(SampleEpoch.epoch).where(SampleEpoch.job_id == job.id, SampleEpoch.epoch == epoch).limit(1)
    )
    if recorded is None:
        stored = "no epoch is stored yet" if newest is None else f"stored epochs end at {newest}"
        raise InvalidParameterError(f"epoch {epoch} of job {job.id} is not stored ({stored})")
    column = getattr(SampleEpoch, EPOCH_SCORE_COLUMNS[name])
    return (-column if ORIENTATION[name]["sign"] == "-" else column), epoch


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
    labels: JobLabels | None,
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


def _label_condition(labels: JobLabels | None, label: int) -> ColumnElement[bool]:
    if labels is None:
        return Sample.label == label
    return SampleScore.sample_index.in_(np.flatnonzero(labels.labels == label).tolist())


def _with_job_labels(suspect: Suspect, labels: JobLabels | None) -> Suspect:
    if labels is None:
        return suspect
    index = suspect.sample_index
    return replace(suspect, label=int(labels.labels[index]), is_mislabeled=bool(labels.is_mislabeled[index]))


def _decided_since_metrics(session: Session, job: AuditJob) -> bool:
    if job.status is not JobStatus.SUCCEEDED or job.config.get("inject_noise"):
        return False
    changed = decisions.last_change(session, job.dataset_version.dataset_id)
    if changed is None:
        return False
    computed = session.scalar(select(func.min(JobMetric.created_at)).where(JobMetric.job_id == job.id))
    return computed is None or computed < changed


def _known_flags(session: Session, job: AuditJob, data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Which samples have a known flag, and the flags (False where unknown), by sample index: the
    injected ones, or the uploaded ones overridden where reviewers' decisions agree."""
    labels = job_labels(job, data_dir)
    if labels is not None:
        return np.ones(len(labels.is_mislabeled), dtype=bool), labels.is_mislabeled.astype(bool)
    stored = session.scalars(
        select(Sample.is_mislabeled)
        .where(Sample.dataset_version_id == job.dataset_version_id)
        .order_by(Sample.sample_index)
    ).all()
    for review in decisions.job_decisions(session, job, data_dir).values():
        if review.flag is not None:
            stored[review.sample_index] = review.flag
    return np.array([flag is not None for flag in stored]), np.array([bool(flag) for flag in stored])


def _encode_cursor(order: str, position) -> str:
    raw = json.dumps({"order": order, "after": position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str | None, order: str):
    if cursor is None:
        return None
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        cursor_order, position = decoded["order"], decoded["after"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise InvalidParameterError("invalid cursor") from None
    if cursor_order != order:
        raise InvalidParameterError("the cursor belongs to a list in another order; start again without it")
    valid = isinstance(position, int) if order == "rank" else _is_key_position(position)
    if not valid:
        raise InvalidParameterError("invalid cursor")
    return position


def _is_key_position(position) -> bool:
    return (
        isinstance(position, list)
        and len(position) == 2
        and (position[0] is None or isinstance(position[0], (int, float)))
        and isinstance(position[1], int)
    )


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


def _stored_scores(session: Session, job_id: int) -> dict[str, np.ndarray]:
    """The job's aggregated scores by sample index (the ones it has: cleanlab's only with cross-fit)."""
    columns = [getattr(SampleScore, name) for name in SCORE_NAMES]
    rows = session.execute(
        select(*columns).where(SampleScore.job_id == job_id).order_by(SampleScore.sample_index)
    ).all()
    if not rows:
        raise ConflictError(f"job {job_id} has no stored scores")
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(columns))
    return {name: values[:, i] for i, name in enumerate(SCORE_NAMES) if not np.isnan(values[:, i]).all()}


def _stored_history(session: Session, job_id: int, num_samples: int) -> DynamicsHistory:
    """The job's stored dynamics as [epochs, samples] arrays (NULL read as NaN)."""
    fields = ["epoch", "split", "predicted", *FLOAT_FIELDS]
    statement = (
        select(*(getattr(SampleEpoch, name) for name in fields))
        .where(SampleEpoch.job_id == job_id)
        .order_by(SampleEpoch.epoch, SampleEpoch.sample_index)
    )
    rows = np.array(session.execute(statement).all(), dtype=np.float64).reshape(-1, len(fields))
    if len(rows) == 0 or len(rows) % num_samples:
        raise ConflictError(f"job {job_id} has no complete stored dynamics")
    table = {name: rows[:, i].reshape(-1, num_samples) for i, name in enumerate(fields)}
    return DynamicsHistory(
        epochs=table["epoch"][:, 0].astype(np.int64),
        split=table["split"][-1].astype(np.uint8),
        predicted=table["predicted"].astype(np.int64),
        **{name: table[name].astype(np.float32) for name in FLOAT_FIELDS},
    )


def _history_subset(history: DynamicsHistory, keep: np.ndarray) -> DynamicsHistory:
    return DynamicsHistory(
        epochs=history.epochs,
        split=history.split[keep],
        predicted=history.predicted[:, keep],
        **{name: getattr(history, name)[:, keep] for name in FLOAT_FIELDS},
    )
