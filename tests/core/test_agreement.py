"""Cohen's and Fleiss' kappa against worked examples and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from core.agreement import cohen_kappa, fleiss_kappa, fleiss_kappa_of_counts


def test_cohen_kappa_of_the_textbook_example():
    # 50 proposals read by two readers: both yes 20, A yes / B no 5, A no / B yes 10, both no 15.
    # p_o = 0.7, p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5, kappa = 0.4.
    first = ["yes"] * 25 + ["no"] * 25
    second = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)


def test_cohen_kappa_matches_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(20):
        first = rng.choice(["3", "5", "8", "(removed)"], size=40).tolist()
        second = [a if rng.random() < 0.6 else rng.choice(["3", "5", "8"]) for a in first]
        assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second))


def test_kappa_is_none_where_undefined_and_negative_below_chance():
    assert cohen_kappa(["keep"] * 5, ["keep"] * 5) is None
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["a", "b", "a", "b"], ["b", "a", "b", "a"]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        cohen_kappa(["a"], ["a", "b"])


def test_fleiss_kappa_of_the_worked_example():
    # Fleiss (1971) as worked on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa = 0.210.
    counts = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert fleiss_kappa_of_counts(counts) == pytest.approx(0.2099, abs=1e-4)
    ratings = [[category for category, n in enumerate(row) for _ in range(n)] for row in counts]
    assert fleiss_kappa(ratings) == pytest.approx(0.2099, abs=1e-4)


def test_fleiss_kappa_leaves_out_single_ratings_and_agrees_with_full_agreement():
    assert fleiss_kappa([["a", "a"], ["b", "b", "b"], ["c"]]) == pytest.approx(1.0)
    assert fleiss_kappa([["a"], ["b"]]) is None
    assert fleiss_kappa([["a", "a"], ["a", "a"]]) is None
