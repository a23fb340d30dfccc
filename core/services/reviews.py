"""The review workspace of a job: the queue of suspects with what a reviewer decides on, how far
the review has come, and the corrected labels to export.

A queue item carries the sample's preview (the rows and series inline; images are fetched as
thumbnails, `previews`), the job's label, the trained model's top classes (`predictions`), the
sample's W_alpha / W_beta / W_delta at every epoch, and the decisions that count on it
(`decisions`) with their comments. The queue is in the job's rank order and filtered like the
suspects, plus by review status: undecided (the default: no decision applies, or the sample was
decided in an earlier audit and this one ranks it markedly more suspicious:
`reaudits.reopened_samples`), decided, conflicting, or all. With a viewer, the queue is theirs
(`QueueScope`: by default only their assigned samples once the job has assignments), and a
sample assigned blind shows them no other reviewer's verdict, nor its comments, until they
decided it (`assignments.QueueView`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.services import InvalidParameterError, NotFoundError, decisions, predictions, previews, reaudits, results
from core.services import assignments, comments
from core.services.artifacts import JobArtifacts, TopClasses, job_artifacts
from core.services.decisions import Reviewer, SampleDecisions
from core.services.results import noise_summary
from core.settings import Settings
from core.store.models import Adjudication, AuditJob, Decision, DecisionComment, Sample
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


class QueueScope(StrEnum):
    """Whose samples the queue shows: auto is the viewer's assignments when the job has
    assignments and the viewer is neither its lead nor an adjudicator, else every sample."""

    AUTO = "auto"
    MINE = "mine"
    ALL = "all"


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
    comments: tuple[DecisionComment, ...] = ()  # on the decisions in `review`, oldest first


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

    @property
    def reviewers(self) -> str:
        """Who decided what, oldest first, then the adjudicator's final verdict when one settled it."""
        said = [f"{decision.reviewer}: {_described(decision)}" for decision in self.decisions]
        if self.review is not None and self.review.adjudicated:
            adjudication = self.review.adjudication
            said.append(f"{adjudication.adjudicator} (adjudicator): {_described(adjudication)}")
        return "; ".join(said)

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
            "reviewers": self.reviewers,
            "decided_at": None if decided_at is None else decided_at.isoformat(),
            "known_mislabeled": self.known_mislabeled,
        }

    def label_studio_task(self, image: str | None = None) -> dict[str, Any]:
        """The sample as a Label Studio task (the labeling config is in the README): in `data`
        its ids, given label, corrected label and who decided what when (`image`: a URL of the
        image, for an <Image name="sample" value="$image">), each reviewer's decision as an
        annotation with a `verdict` choice and, unless removed, the resulting `label` choice, on
        the object named "sample". Label Studio keeps `data` and `meta` on import, and each
        annotation's `created_at` / `updated_at`; `completed_by` is a Label Studio user id, which
        a reviewer has not, so the importing user becomes the annotator and the reviewer's name
        is in `meta.decisions` and `data.reviewers`."""
        annotations, decided = [], []
        for decision in self.decisions:
            result = [_choice("verdict", decision.verdict.value)]
            if decision.outcome != REMOVED:
                result.append(_choice("label", decision.outcome))
            when = decision.created_at.isoformat()
            annotations.append({"result": result, "was_cancelled": False, "created_at": when, "updated_at": when})
            decided.append(
                {"reviewer": decision.reviewer, "verdict": decision.verdict.value, "label": decision.label,
                 "decided_at": when}
            )  # fmt: skip
        row = self.row()
        data = {
            "sample_id": self.sample_id,
            "sample_index": self.sample_index,
            "given_label": self.given_label,
            "label": row["label"],
            "verdict": row["verdict"],
            "reviewers": row["reviewers"],
            "decided_at": row["decided_at"] or "",
        }
        if image is not None:
            data["image"] = image
        return {"id": self.sample_index + 1, "data": data, "meta": {"decisions": decided}, "annotations": annotations}


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
    sample_id: str | None = None,
    viewer: Reviewer | None = None,
    scope: QueueScope = QueueScope.AUTO,
    given: int | None = None,
    likely: int | None = None,
) -> ReviewQueue:
    """One page of the job's review queue, most suspicious first, with the progress of the review
    over the filtered samples on the first page (`sample_id` keeps that one sample only, and
    leaves the progress as it is without it). The previews and the model's top classes are made
    first, before any query: a first visit may take long, and should not hold a transaction."""
    version = job.dataset_version
    artifacts = job_artifacts(settings, job)
    load = previews.version_loader(version, settings)
    top = predictions.top_classes(job, artifacts, load)
    values = None if version.modality == "image" else previews.preview_array(version, settings, load)
    results.require_scores(session, job)
    reviews = decisions.job_decisions(session, job, artifacts)
    reopened = reaudits.reopened_samples(session, job, reviews)
    decided = {review.sample_index for review in decisions.decided(reviews)} - reopened
    view = None if viewer is None else assignments.queue_view(session, job, viewer)
    mine = _scoped_samples(scope, view)
    if view is not None:
        # Decided means decided by the viewer on their own samples, and on a blind sample.
        decided = {i for i in decided if not view.hides(reviews[i])}
        if mine is not None:
            decided = {i for i in decided if assignments.decided_by(reviews[i], view.viewer)}
    conflicts = {index for index in decided if reviews[index].conflict}
    only, excluding = _status_filter(status, decided, conflicts)
    if mine is not None:
        only = mine if only is None else set(only) & mine
    if given is not None or likely is not None:  # one "given → likely" pair of the noise estimate
        pair = frozenset(noise_summary.pair_samples(session, job, artifacts, given=given, likely=likely))
        only = pair if only is None else set(only) & pair
        mine = pair if mine is None else mine & pair  # the progress counts within the pair too
    if sample_id is not None:
        found = session.scalar(
            select(Sample.sample_index).where(Sample.dataset_version_id == version.id, Sample.sample_id == sample_id)
        )
        searched = set() if found is None else {found}
        only = searched if only is None else searched & set(only)
    filters = {"label": label, "split": split, "min_score": min_score}
    page = results.suspects_page(
        session, job, artifacts, limit=limit, cursor=cursor, only=only, excluding=excluding, **filters
    )
    indexes = [ranked.suspect.sample_index for ranked in page.suspects]
    weights = weight_histories(session, job.id, indexes, page.newest_epoch)
    shown = {index: reviews.get(index) if view is None else view.visible(reviews.get(index)) for index in indexes}
    said = comments.comments_of(session, [d.id for review in shown.values() if review for d in review.decisions])
    items = [
        QueueItem(
            suspect=ranked,
            review=shown[index],
            top_classes=[] if top is None else _top_classes(top, index),
            weights=weights.get(index),
            values=None if values is None else previews.sample_values(values, index),
            comments=_comments_on(shown[index], said),
        )
        for ranked, index in zip(page.suspects, indexes)
    ]
    progress = None
    if cursor is None:
        within = {"decided": decided, "conflicts": conflicts}
        counts = results.count_suspects(
            session, job, artifacts, only=mine, within=within, newest_epoch=page.newest_epoch, **filters
        )
        progress = ReviewProgress(**counts)
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
    session: Session,
    job: AuditJob,
    artifacts: JobArtifacts,
    *,
    conflicts_only: bool = False,
    viewer: Reviewer | None = None,
) -> list[SampleDecisions]:
    """The job's samples with decisions, by sample index; as the viewer may see them (a blind
    sample they have not decided yet shows only their own decisions, and no conflict)."""
    found = decisions.job_decisions(session, job, artifacts).values()
    if viewer is not None:
        view = assignments.queue_view(session, job, viewer)
        found = [view.visible(review) for review in found]
        found = [review for review in found if review.decisions]
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


def _scoped_samples(scope: QueueScope, view: assignments.QueueView | None) -> frozenset[int] | None:
    """The samples the queue is limited to: the viewer's assignments, or None for no limit."""
    if view is None or scope is QueueScope.ALL:
        return None
    if scope is QueueScope.MINE or (view.job_has_assignments and not view.privileged):
        return view.assigned
    return None


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


def _comments_on(
    review: SampleDecisions | None, said: dict[int, list[DecisionComment]]
) -> tuple[DecisionComment, ...]:
    found = [] if review is None else [c for decision in review.decisions for c in said.get(decision.id, [])]
    return tuple(sorted(found, key=lambda comment: comment.id))


def _top_classes(top: TopClasses, index: int) -> list[tuple[int, float]]:
    return [(int(c), float(p)) for c, p in zip(top.classes[index], top.probabilities[index])]


def _described(decision: Decision | Adjudication) -> str:
    return f"relabel to {decision.label}" if decision.label is not None else decision.verdict.value


def _choice(control: str, value: str) -> dict[str, Any]:
    return {"from_name": control, "to_name": "sample", "type": "choices", "value": {"choices": [value]}}
