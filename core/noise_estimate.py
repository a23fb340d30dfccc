"""How many label errors a dataset holds, and between which classes: cleanlab's confident joint
(Northcutt et al., "Confident Learning", 2021), updated with what reviewers found.

From class probabilities `probs` [N, C] (out of sample when cross-fitting ran, else an audit's
final ones) and the given labels:

1. per-class thresholds t_k = mean p_k over the samples labeled k;
2. each sample's *likely* class: the most probable among the classes whose probability reaches
   their threshold (none when no class does);
3. the confident joint C[i, j]: samples given label i whose likely class is j;
4. calibration to the class counts: row i scaled by n_i / (row sum), so that it counts every
   sample labeled i. The estimated errors are the calibrated off-diagonal cells.

Each sample off the diagonal stands for n_i / (row sum) errors (its *error weight*); samples on
the diagonal or with no likely class for none. Reviewers' verdicts replace the model where they
say something: a sample known mislabeled counts one error found (under the class it was
corrected to, when there is one), a sample known clean none, and the estimate for the samples
not known stays the model's (`with_reviews`). Reviewing everything leaves exactly the errors found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

NO_CLASS = -1  # a sample's likely class when no class reaches its threshold; a removed sample's correction
_THRESHOLD_SLACK = 1e-6  # as cleanlab: a probability this close under its threshold still reaches it


@dataclass(frozen=True)
class NoiseEstimate:
    """The model's estimate: per sample, its likely class and how many errors it stands for."""

    labels: np.ndarray  # int64 [N], the given labels
    likely: np.ndarray  # int64 [N], the likely class, NO_CLASS where none reaches its threshold
    error_weight: np.ndarray  # float64 [N], 0 on the diagonal
    thresholds: np.ndarray  # float64 [C]

    @property
    def num_classes(self) -> int:
        return len(self.thresholds)

    def calibrated_joint(self) -> np.ndarray:
        """float64 [C, C]: estimated samples given label i whose true class is j (rows sum to
        the class counts; the diagonal holds what is not an error)."""
        c = self.num_classes
        counts = np.bincount(self.labels, minlength=c).astype(np.float64)
        joint = np.zeros((c, c))
        off = self.error_weight > 0
        np.add.at(joint, (self.labels[off], self.likely[off]), self.error_weight[off])
        joint[np.diag_indices(c)] = counts - joint.sum(axis=1)
        return joint


def estimate_noise(probs: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> NoiseEstimate:
    """The confident-joint estimate from class probabilities [N, C] and given labels [N]."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    c = probs.shape[1] if num_classes is None else num_classes
    if probs.ndim != 2 or probs.shape != (len(labels), c):
        raise ValueError(f"probabilities of shape {probs.shape} do not fit {len(labels)} labels of {c} classes")
    counts = np.bincount(labels, minlength=c)
    thresholds = np.array([probs[labels == k, k].mean() if counts[k] else np.inf for k in range(c)])
    reaching = probs >= thresholds - _THRESHOLD_SLACK
    likely = np.where(reaching.any(axis=1), np.where(reaching, probs, -np.inf).argmax(axis=1), NO_CLASS)
    confident = likely != NO_CLASS
    raw = np.zeros((c, c), dtype=np.int64)
    np.add.at(raw, (labels[confident], likely[confident]), 1)
    # As cleanlab: at least one correctly labeled sample per class, so that a class whose samples
    # all look like another's does not become all errors from a handful of confident samples.
    np.fill_diagonal(raw, np.maximum(raw.diagonal(), 1))
    row_factor = counts / raw.sum(axis=1)
    error_weight = np.where(confident & (likely != labels), row_factor[labels], 0.0)
    return NoiseEstimate(labels=labels, likely=likely.astype(np.int64), error_weight=error_weight, thresholds=thresholds)


@dataclass(frozen=True)
class ReviewedNoise:
    """The estimate with reviewers' verdicts: totals per given class and per (given, likely) pair."""

    errors_by_class: np.ndarray  # float64 [C]: found + the model's estimate of the samples not known
    model_errors_by_class: np.ndarray  # float64 [C]: the model's estimate alone
    found_by_class: np.ndarray  # int64 [C]: known mislabeled
    known_by_class: np.ndarray  # int64 [C]: known mislabeled or clean
    pairs: np.ndarray  # float64 [C, C], zero diagonal: found corrections + the model's estimate
    found_pairs: np.ndarray  # int64 [C, C]: known mislabeled and corrected to the column's class
    class_counts: np.ndarray  # int64 [C]

    @property
    def errors(self) -> float:
        return float(self.errors_by_class.sum())

    @property
    def model_errors(self) -> float:
        return float(self.model_errors_by_class.sum())

    @property
    def found(self) -> int:
        return int(self.found_by_class.sum())

    def top_pairs(self, limit: int) -> list[tuple[int, int, float]]:
        """The (given, likely, estimated errors) pairs with the most errors, most first; pairs
        estimated to hold less than half an error are left out."""
        given, likely = np.nonzero(self.pairs >= 0.5)
        order = np.lexsort((likely, given, -self.pairs[given, likely]))[:limit]
        return [(int(given[i]), int(likely[i]), float(self.pairs[given[i], likely[i]])) for i in order]


def with_reviews(estimate: NoiseEstimate, known: Mapping[int, tuple[bool, int]]) -> ReviewedNoise:
    """The estimate where `known` ({sample index: (is mislabeled, corrected class or NO_CLASS)})
    replaces the model: a known error counts 1 (in the pair of its correction, when it has one),
    a known clean sample 0; the other samples keep their error weight."""
    c = estimate.num_classes
    labels = estimate.labels
    unknown = np.ones(len(labels), dtype=bool)
    index = np.fromiter(known, dtype=np.int64, count=len(known))
    unknown[index] = False
    is_error = np.array([known[i][0] for i in index.tolist()], dtype=bool)
    corrected = np.array([known[i][1] for i in index.tolist()], dtype=np.int64)

    model = np.bincount(labels, weights=estimate.error_weight, minlength=c)
    rest = np.bincount(labels[unknown], weights=estimate.error_weight[unknown], minlength=c)
    found = np.bincount(labels[index[is_error]], minlength=c)
    pairs = np.zeros((c, c))
    off = unknown & (estimate.error_weight > 0)
    np.add.at(pairs, (labels[off], estimate.likely[off]), estimate.error_weight[off])
    found_pairs = np.zeros((c, c), dtype=np.int64)
    with_class = is_error & (corrected != NO_CLASS)
    np.add.at(found_pairs, (labels[index[with_class]], corrected[with_class]), 1)
    return ReviewedNoise(
        errors_by_class=rest + found,
        model_errors_by_class=model,
        found_by_class=found,
        known_by_class=np.bincount(labels[index], minlength=c),
        pairs=pairs + found_pairs,
        found_pairs=found_pairs,
        class_counts=np.bincount(labels, minlength=c),
    )
