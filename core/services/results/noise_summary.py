"""A job's stopping point: how many label errors its dataset likely holds, overall, per given
label and per "given label → likely label" pair, and how many of them reviewers found
(`core.noise_estimate`: the confident joint of the audit's class probabilities, with reviewed
samples counting what reviewers found instead of the model's guess).

The probabilities are the job's stored ones (`ClassProbabilities`): out of sample when the audit
cross-fitted, else its final ones. A sample's likely label is the same for every request (it
depends on the audit only), so a review queue opened on a pair (`pair_samples`) lists the
samples the model put there, whether reviewed or not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.noise_estimate import NO_CLASS, NoiseEstimate, estimate_noise, with_reviews
from core.services import ConflictError, decisions
from core.services.artifacts import JobArtifacts
from core.store.models import AuditJob, Sample

SOURCE_OUT_OF_SAMPLE = "out_of_sample"
SOURCE_FINAL = "final"


@dataclass(frozen=True)
class ClassNoise:
    label: int
    samples: int
    estimated_errors: float  # found + the model's estimate of the samples whose truth is not known
    model_errors: float  # the model's estimate before any review
    reviewed: int  # samples with a decision that applies
    found: int  # samples reviewers agree are mislabeled


@dataclass(frozen=True)
class ConfusionPair:
    given: int
    likely: int
    estimated_errors: float
    found: int  # known mislabeled and corrected to `likely`


@dataclass(frozen=True)
class NoiseSummary:
    source: str  # SOURCE_OUT_OF_SAMPLE or SOURCE_FINAL
    num_samples: int
    estimated_errors: float
    model_errors: float
    reviewed: int
    found: int
    classes: list[ClassNoise]
    pairs: list[ConfusionPair]  # most errors first


def noise_summary(session: Session, job: AuditJob, artifacts: JobArtifacts, *, pairs: int = 10) -> NoiseSummary:
    """The job's estimate with the reviewers' verdicts so far, and its `pairs` largest confusion pairs."""
    estimate, source = _estimate(session, job, artifacts)
    class_names = job.dataset_version.class_names
    reviews = decisions.job_decisions(session, job, artifacts)
    known: dict[int, tuple[bool, int]] = {}
    reviewed = np.zeros(estimate.num_classes, dtype=np.int64)
    for review in decisions.decided(reviews):
        reviewed[estimate.labels[review.sample_index]] += 1
        if review.flag is not None:
            outcome = review.outcome
            corrected = class_names.index(outcome) if outcome in class_names else NO_CLASS  # or removed
            known[review.sample_index] = (review.flag, corrected if review.flag else NO_CLASS)
    noise = with_reviews(estimate, known)
    return NoiseSummary(
        source=source,
        num_samples=len(estimate.labels),
        estimated_errors=noise.errors,
        model_errors=noise.model_errors,
        reviewed=int(reviewed.sum()),
        found=noise.found,
        classes=[
            ClassNoise(
                label=k,
                samples=int(noise.class_counts[k]),
                estimated_errors=float(noise.errors_by_class[k]),
                model_errors=float(noise.model_errors_by_class[k]),
                reviewed=int(reviewed[k]),
                found=int(noise.found_by_class[k]),
            )
            for k in range(estimate.num_classes)
        ],
        pairs=[
            ConfusionPair(given=given, likely=likely, estimated_errors=count, found=int(noise.found_pairs[given, likely]))
            for given, likely, count in noise.top_pairs(pairs)
        ],
    )


def pair_samples(
    session: Session, job: AuditJob, artifacts: JobArtifacts, *, given: int | None, likely: int | None
) -> set[int]:
    """The indexes of the job's samples with the given label `given` (any when None) that the
    model's estimate puts under `likely` (any when None)."""
    estimate, _ = _estimate(session, job, artifacts)
    chosen = np.ones(len(estimate.labels), dtype=bool)
    if given is not None:
        chosen &= estimate.labels == given
    if likely is not None:
        chosen &= estimate.likely == likely
    return set(np.flatnonzero(chosen).tolist())


def _estimate(session: Session, job: AuditJob, artifacts: JobArtifacts) -> tuple[NoiseEstimate, str]:
    stored = artifacts.read_probabilities()
    if stored is None:
        raise ConflictError(
            f"job {job.id} has no stored class probabilities (it has not finished, or it ran before they "
            "were stored): re-audit the dataset for an estimate of its label errors"
        )
    probs, source = (
        (stored.out_of_sample, SOURCE_OUT_OF_SAMPLE) if stored.out_of_sample is not None else (stored.final, SOURCE_FINAL)
    )
    return estimate_noise(probs, _job_labels(session, job, artifacts), job.dataset_version.num_classes), source


def _job_labels(session: Session, job: AuditJob, artifacts: JobArtifacts) -> np.ndarray:
    """The labels the job audited, by sample index (the injected ones for a job with injected noise)."""
    injected = artifacts.read_labels()
    if injected is not None:
        return injected.labels.astype(np.int64)
    labels = session.scalars(
        select(Sample.label).where(Sample.dataset_version_id == job.dataset_version_id).order_by(Sample.sample_index)
    ).all()
    return np.asarray(labels, dtype=np.int64)
