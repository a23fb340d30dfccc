"""Agreement between reviewers beyond chance: Cohen's kappa for two reviewers on the samples both
rated, Fleiss' kappa for any number of reviewers per sample.

Both are (observed agreement - chance agreement) / (1 - chance agreement): 1 is full agreement,
0 what raters picking categories at their own rates would reach by chance, below 0 worse than
chance. Where chance agreement is 1 (every rating is the same single category) kappa is undefined
and these return None. Ratings are any hashable category (here: the label a sample would end up
with, or "(removed)").
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters' ratings of the same subjects, in the same order."""
    if len(first) != len(second):
        raise ValueError(f"{len(first)} ratings against {len(second)}: rate the same subjects")
    if not first:
        return None
    categories = {category: index for index, category in enumerate(dict.fromkeys([*first, *second]))}
    confusion = np.zeros((len(categories), len(categories)))
    for a, b in zip(first, second):
        confusion[categories[a], categories[b]] += 1
    confusion /= confusion.sum()
    observed = float(np.trace(confusion))
    chance = float(confusion.sum(axis=1) @ confusion.sum(axis=0))
    return _kappa(observed, chance)


def fleiss_kappa(ratings: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa of the ratings of each subject (one list per subject, one entry per rater).
    Subjects with fewer than two ratings are left out; subjects may have different numbers of
    raters (each subject's agreement is then over its own rater pairs)."""
    rated = [subject for subject in ratings if len(subject) >= 2]
    if not rated:
        return None
    categories = {category: index for index, category in enumerate(dict.fromkeys(r for s in rated for r in s))}
    counts = np.zeros((len(rated), len(categories)))
    for row, subject in enumerate(rated):
        for rating in subject:
            counts[row, categories[rating]] += 1
    return fleiss_kappa_of_counts(counts)


def fleiss_kappa_of_counts(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of a subjects × categories table of how many raters chose each category."""
    counts = np.asarray(counts, dtype=float)
    raters = counts.sum(axis=1)
    if counts.ndim != 2 or not len(counts) or (raters < 2).any():
        raise ValueError("a subjects x categories table with at least two ratings per subject")
    per_subject = ((counts**2).sum(axis=1) - raters) / (raters * (raters - 1))
    observed = float(per_subject.mean())
    shares = counts.sum(axis=0) / raters.sum()
    chance = float((shares**2).sum())
    return _kappa(observed, chance)


def _kappa(observed: float, chance: float) -> float | None:
    if np.isclose(chance, 1.0):
        return None
    return (observed - chance) / (1.0 - chance)
