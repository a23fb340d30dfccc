"""The review workspace of a job: the queue of suspects with what a reviewer decides on, how far
the review has come, and the corrected labels to export.

A queue item carries the sample's preview (the rows and series inline; images are fetched as
thumbnails, `previews`), the job's label, the trained model's top classes (`predictions`), the
sample's W_alpha / W_beta / W_delta at every epoch, and the decisions that count on it
(`decisions`). The queue is in the job's rank order and filtered like the suspects, plus by
review status: undecided (the default: no decision applies, or the sample was decided in an
earlier audit and this one ranks it markedly more suspicious: `reaudits.reopened_samples`),
decided, conflicting, or all.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.services import InvalidParameterError, NotFoundError, decisions, predictions, previews, reaudits, results
from core.services.artifacts import JobArtifacts, TopClasses, job_artifacts
from core.services.decisions import SampleDecisions
from core.settings import Settings
from core.store.models import AuditJob, Decision, Sample
from core.store.queries import weight_histories
from core.verdicts import REMOVED

EXPORT_CHUNK = 5_000
EXPORT_COLUMNS = [
    "sample_index",
    "sample_id",
    "given_label",
    "label",
    "verdict",
    "removed",
    "is_mislabeled",
    "conflict",
    "reviewers",
    "decided_at",
    "known_mislabeled",
]


class ReviewStatus(StrEnum):
    UNDECIDED = "undecided"
    DECIDED = "decided"
    CONFLICT = "conflict"
    ALL = "all"


@dataclass(frozen=True)
class QueueItem:
    suspect: results.RankedSuspect
    review: SampleDecisions | None
    top_classes: list[tuple[int, float]]  # (class index, probability), most probable first
    weights: dict[str, list] | None  # "epoch", "w_alpha", "w_beta", "w_delta"
    values: list | None  # a row's values or a series per channel; None for images


@dataclass(frozen=True)
class ExportedSample:
    """A sample of a job with its corrected label: the label the reviewers agree on (the given
    one when nobody decided or they conflict; empty when they removed the sample)."""

    sample_index: int
    sample_id: str
    given_label: str
    known_mislabeled: bool | None  # the job's flag apart from decisions
    review: SampleDecisions | None

    @property
    def decisions(self) -> tuple[Decision, ...]:
        return () if self.review is None else self.review.applicable

    @property
    def verdict(self) -> str:
        """keep, relabel or remove where the reviewers agree; conflict; empty when undecided."""
        if not self.decisions:
            return ""
        outcome = self.review.outcome
        if outcome is None:
            return "conflict"
        return "remove" if outcome == REMOVED else "keep" if outcome == self.given_label else "relabel"

    def row(self) -> dict[str, Any]:
        """The sample as a row of `EXPORT_COLUMNS`."""
        outcome = None if self.review is None else self.review.outcome
        decided_at = max((decision.created_at for decision in self.decisions), default=None)
        return {
            "sample_index": self.sample_index,
            "sample_id": self.sample_id,
            "given_label": self.given_label,
            "label": "" if outcome == REMOVED else outcome or self.given_label,
            "verdict": self.verdict,
            "removed": outcome == REMOVED,
            "is_mislabeled": None if self.review is None else self.review.flag,
            "conflict": self.verdict == "conflict",
            "reviewers": "; ".join(f"{decision.reviewer}: {_described(decision)}" for decision in self.decisions),
            "decided_at": None if decided_at is None else decided_at.isoformat(),
            "known_mislabeled": self.known_mislabeled,
        }

    def label_studio_task(self) -> dict[str, Any]:
        """The sample as a Label Studio task: its ids and given label in `data`, each reviewer's
        decision as an annotation with a `verdict` choice and, unless removed, the resulting
        `label` choice (read by a labeling config with <Choices name="verdict"> and
        <Choices name="label"> on an object named "sample")."""
        annotations = []
        for decision in self.decisions:
            result = [_choice("verdict", decision.verdict.value)]
            if decision.outcome != REMOVED:
                result.append(_choice("label", decision.outcome))
            annotations.append(
                {
                    "result": result,
                    "was_cancelled": False,
                    "created_at": decision.created_at.isoformat(),
                    "reviewer": decision.reviewer,
                }
            )
        return {
            "id": self.sample_index + 1,
            "data": {"sample_id": self.sample_id, "sample_index": self.sample_index, "given_label": self.given_label},
            "annotations": annotations,
        }


@dataclass(frozen=True)
class ReviewProgress:
    total: int  # samples passing the filters
    decided: int
    conflicts: int

    @property
    def remaining(self) -> int:
        return self.total - self.decided


@dataclass(frozen=True)
class ReviewQueue:
    items: list[QueueItem]
    next_cursor: str | None
    progress: ReviewProgress | None  # on the first page only


def review_queue(
    session: Session,
    job: AuditJob,
    settings: Settings,
    *,
    limit: int,
    cursor: str | None = None,
    label: int | None = None,
    split: int | None = None,
    min_score: float | None = None,
    status: ReviewStatus = ReviewStatus.UNDECIDED,
) -> ReviewQueue:
    """One page of the job's review queue, most suspicious first, with the progress of the review
    over the filtered samples on the first page. The previews and the model's top classes are
    made first, before any query: a first visit may take long, and should not hold a transaction."""
    version = job.dataset_version
    artifacts = job_artifacts(settings, job)
    load = previews.version_loader(version, settings)
    top = predictions.top_classes(job, artifacts, load)
    values = None if version.modality == "image" else previews.preview_array(version, settings, load)
    results.require_scores(session, job)
    reviews = decisions.job_decisions(session, job, artifacts)
    reopened = reaudits.reopened_samples(session, job, reviews)
    decided = {review.sample_index for review in decisions.decided(reviews)} - reopened
    conflicts = {index for index in decided if reviews[index].conflict}
    only, excluding = _status_filter(status, decided, conflicts)
    filters = {"label": label, "split": split, "min_score": min_score}
    page = results.suspects_page(
        session, job, artifacts, limit=limit, cursor=cursor, only=only, excluding=excluding, **filters
    )
    indexes = [ranked.suspect.sample_index for ranked in page.suspects]
    weights = weight_histories(session, job.id, indexes)
    items = [
        QueueItem(
            suspect=ranked,
            review=reviews.get(index),
            top_classes=[] if top is None else _top_classes(top, index),
            weights=weights.get(index),
            values=None if values is None else previews.sample_values(values, index),
        )
        for ranked, index in zip(page.suspects, indexes)
    ]
    progress = None
    if cursor is None:
        progress = ReviewProgress(
            total=results.count_suspects(session, job, artifacts, **filters),
            decided=results.count_suspects(session, job, artifacts, only=decided, **filters),
            conflicts=results.count_suspects(session, job, artifacts, only=conflicts, **filters),
        )
    return ReviewQueue(items=items, next_cursor=page.next_cursor, progress=progress)


def thumbnail(job: AuditJob, settings: Settings, sample_index: int) -> bytes:
    """A PNG thumbnail of an image sample of the job."""
    version = job.dataset_version
    if version.modality != "image":
        raise InvalidParameterError(f"job {job.id} audits {version.modality} data, which has no thumbnails")
    if not 0 <= sample_index < version.num_samples:
        raise NotFoundError(f"job {job.id} has no sample {sample_index}")
    array = previews.preview_array(version, settings, previews.version_loader(version, settings))
    return previews.thumbnail_png(array, sample_index)


def reviewed_samples(
    session: Session, job: AuditJob, artifacts: JobArtifacts, *, conflicts_only: bool = False
) -> list[SampleDecisions]:
    """The job's samples with decisions, by sample index."""
    found = decisions.job_decisions(session, job, artifacts).values()
    return [review for review in found if review.conflict or not conflicts_only]


def export_samples(
    sessions: sessionmaker[Session], job: AuditJob, artifacts: JobArtifacts, *, decided_only: bool = False
) -> Iterator[list[ExportedSample]]:
    """The job's samples with their decisions, in chunks by sample index, each chunk read in its
    own short transaction."""
    with sessions() as session:
        reviews = decisions.job_decisions(session, job, artifacts)
    labels = artifacts.read_labels()
    class_names = job.dataset_version.class_names
    after = -1
    while True:
        with sessions() as session:
            chunk = session.execute(
                select(Sample.sample_index, Sample.sample_id, Sample.label, Sample.is_mislabeled)
                .where(Sample.dataset_version_id == job.dataset_version_id, Sample.sample_index > after)
                .order_by(Sample.sample_index)
                .limit(EXPORT_CHUNK)
            ).all()
        if not chunk:
            return
        exported = []
        for index, sample_id, label, uploaded_flag in chunk:
            review = reviews.get(index)
            if decided_only and (review is None or not review.applicable):
                continue
            if labels is not None:
                label, uploaded_flag = int(labels.labels[index]), bool(labels.is_mislabeled[index])
            exported.append(ExportedSample(index, sample_id, class_names[label], uploaded_flag, review))
        if exported:
            yield exported
        after = chunk[-1].sample_index


def _status_filter(
    status: ReviewStatus, decided: set[int], conflicts: set[int]
) -> tuple[Collection[int] | None, Collection[int]]:
    """The (only, excluding) sample indexes of a review status."""
    return {
        ReviewStatus.UNDECIDED: (None, decided),
        ReviewStatus.DECIDED: (decided, ()),
        ReviewStatus.CONFLICT: (conflicts, ()),
        ReviewStatus.ALL: (None, ()),
    }[status]


def _top_classes(top: TopClasses, index: int) -> list[tuple[int, float]]:
    return [(int(c), float(p)) for c, p in zip(top.classes[index], top.probabilities[index])]


def _described(decision: Decision) -> str:
    return f"relabel to {decision.label}" if decision.label is not None else decision.verdict.value


def _choice(control: str, value: str) -> dict[str, Any]:
    return {"from_name": control, "to_name": "sample", "type": "choices", "value": {"choices": [value]}}
