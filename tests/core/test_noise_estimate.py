"""The label-error estimate on synthetic probabilities with known noise, and its update with
reviewers' verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from cleanlab.count import compute_confident_joint

from core.noise_estimate import NO_CLASS, estimate_noise, with_reviews

NUM_SAMPLES = 6000
NUM_CLASSES = 5


def noisy_problem(kind: str, rate: float, seed: int = 0):
    """True labels, given labels with `rate` of them flipped (uniformly to another class, or
    asymmetrically to the next one), and probabilities of a classifier that sees the true class
    (as out-of-sample probabilities do), with some confusion."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, NUM_CLASSES, NUM_SAMPLES)
    logits = rng.normal(0.0, 1.0, (NUM_SAMPLES, NUM_CLASSES))
    logits[np.arange(NUM_SAMPLES), true] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    flipped = rng.random(NUM_SAMPLES) < rate
    shift = rng.integers(1, NUM_CLASSES, NUM_SAMPLES) if kind == "uniform" else np.ones(NUM_SAMPLES, dtype=np.int64)
    given = np.where(flipped, (true + shift) % NUM_CLASSES, true)
    return true, given, probs


@pytest.mark.parametrize("kind", ["uniform", "asymmetric"])
@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_the_estimate_counts_the_injected_errors_overall_and_per_class(kind, rate):
    true, given, probs = noisy_problem(kind, rate)
    noise = with_reviews(estimate_noise(probs, given), {})
    errors = given != true
    assert noise.errors == pytest.approx(errors.sum(), rel=0.1)
    per_class = np.bincount(given[errors], minlength=NUM_CLASSES)
    assert np.abs(noise.errors_by_class - per_class).max() <= 0.15 * per_class.max() + 5
    if kind == "asymmetric":  # the shape of the noise: class k given to the samples of k − 1
        for given_label, likely, count in noise.top_pairs(NUM_CLASSES):
            assert likely == (given_label - 1) % NUM_CLASSES
            assert count == pytest.approx(per_class[given_label], rel=0.2)


def test_the_calibrated_joint_is_cleanlabs():
    _, given, probs = noisy_problem("uniform", 0.2)
    ours = estimate_noise(probs, given).calibrated_joint()
    theirs = compute_confident_joint(given, probs, calibrate=True)
    assert np.abs(ours - theirs).max() <= 1  # cleanlab rounds its cells to integers
    assert np.allclose(ours.sum(axis=1), np.bincount(given, minlength=NUM_CLASSES))


def test_reviewed_samples_count_what_reviewers_found_and_the_rest_stays_the_models():
    true, given, probs = noisy_problem("uniform", 0.2)
    estimate = estimate_noise(probs, given)
    before = with_reviews(estimate, {})
    suspects = np.argsort(-estimate.error_weight)[:300]  # the model's top suspects, reviewed
    known = {int(i): (bool(given[i] != true[i]), int(true[i]) if given[i] != true[i] else NO_CLASS) for i in suspects}
    after = with_reviews(estimate, known)
    found = sum(is_error for is_error, _ in known.values())
    assert after.found == found
    assert after.errors == pytest.approx(before.errors - estimate.error_weight[suspects].sum() + found)
    assert after.known_by_class.sum() == 300 and after.model_errors == before.model_errors
    # A relabel counts in its pair: given → the class the reviewer chose.
    i = next(i for i, (is_error, _) in known.items() if is_error)
    assert after.found_pairs[given[i], true[i]] >= 1

    everything = {i: (bool(given[i] != true[i]), int(true[i])) for i in range(NUM_SAMPLES)}
    done = with_reviews(estimate, everything)
    assert done.errors == (given != true).sum() == done.found
    assert np.array_equal(done.pairs, done.found_pairs)


def test_a_removed_sample_is_an_error_of_no_pair():
    _, given, probs = noisy_problem("uniform", 0.2)
    estimate = estimate_noise(probs, given)
    clean_looking = int(np.flatnonzero(estimate.error_weight == 0)[0])
    noise = with_reviews(estimate, {clean_looking: (True, NO_CLASS)})
    assert noise.found == 1 and noise.found_pairs.sum() == 0
    assert noise.errors == pytest.approx(with_reviews(estimate, {}).errors + 1)


def test_probabilities_that_do_not_fit_the_labels_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        estimate_noise(np.full((3, 2), 0.5), np.array([0, 1]))
