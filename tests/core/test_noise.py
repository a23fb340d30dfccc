"""core.noise: exact rates, valid targets, seeding, and apply_noise on the bundled digits."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from core.loaders import load_dataset
from core.noise import KINDS, apply_noise, inject_noise, parse_noise_spec, stratified_choice

NUM_CLASSES = 10
LABELS = np.random.default_rng(123).integers(0, NUM_CLASSES, size=1001)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("rate", [0.0, 0.13, 0.5, 0.9])
def test_exact_rate_and_real_flips(kind, rate):
    noisy, flipped = inject_noise(LABELS, kind, rate, NUM_CLASSES, seed=7)
    assert noisy.dtype == np.int64 and flipped.dtype == np.bool_
    assert flipped.sum() == round(rate * len(LABELS))
    assert np.array_equal(flipped, noisy != LABELS)
    assert noisy.min() >= 0 and noisy.max() < NUM_CLASSES


@pytest.mark.parametrize("kind", KINDS)
def test_rate_zero_returns_labels_unchanged(kind):
    noisy, flipped = inject_noise(LABELS, kind, 0.0, NUM_CLASSES, seed=1)
    assert np.array_equal(noisy, LABELS) and not flipped.any()
    assert noisy is not LABELS


@pytest.mark.parametrize("kind", KINDS)
def test_seeding(kind):
    first = inject_noise(LABELS, kind, 0.3, NUM_CLASSES, seed=3)
    again = inject_noise(LABELS, kind, 0.3, NUM_CLASSES, seed=3)
    other = inject_noise(LABELS, kind, 0.3, NUM_CLASSES, seed=4)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_input_is_not_modified():
    labels = LABELS.copy()
    for kind in KINDS:
        inject_noise(labels, kind, 0.5, NUM_CLASSES, seed=0)
    assert np.array_equal(labels, LABELS)


def test_uniform_targets_cover_other_classes():
    noisy, flipped = inject_noise(LABELS, "uniform", 0.9, NUM_CLASSES, seed=0)
    for cls in range(NUM_CLASSES):
        targets = set(noisy[flipped & (LABELS == cls)])
        assert targets == set(range(NUM_CLASSES)) - {cls}


def test_asymmetric_default_map_and_stratification():
    noisy, flipped = inject_noise(LABELS, "asymmetric", 0.4, NUM_CLASSES, seed=0)
    assert np.array_equal(noisy[flipped], (LABELS[flipped] + 1) % NUM_CLASSES)
    for cls in range(NUM_CLASSES):
        members = LABELS == cls
        assert abs(flipped[members].mean() - 0.4) < 0.02


def test_asymmetric_pair_map():
    pair_map = {2: 7, 7: 2, 3: 5}
    noisy, flipped = inject_noise(LABELS, "asymmetric", 0.2, NUM_CLASSES, seed=0, pair_map=pair_map)
    assert flipped.sum() == round(0.2 * len(LABELS))
    assert set(LABELS[flipped]) <= set(pair_map)
    for source, target in pair_map.items():
        assert (noisy[flipped & (LABELS == source)] == target).all()


def test_asymmetric_rate_too_high_for_map():
    with pytest.raises(ConfigError, match="mapped classes"):
        inject_noise(LABELS, "asymmetric", 0.5, NUM_CLASSES, seed=0, pair_map={0: 1})


@pytest.mark.parametrize("pair_map", [{}, {1: 1}, {0: 10}, {-1: 2}])
def test_bad_pair_maps(pair_map):
    with pytest.raises(ConfigError):
        inject_noise(LABELS, "asymmetric", 0.1, NUM_CLASSES, seed=0, pair_map=pair_map)


def test_adjacent_moves_one_step_within_range():
    noisy, flipped = inject_noise(LABELS, "adjacent", 0.9, NUM_CLASSES, seed=0)
    assert (np.abs(noisy[flipped] - LABELS[flipped]) == 1).all()
    assert (noisy[flipped & (LABELS == 0)] == 1).all()
    assert (noisy[flipped & (LABELS == NUM_CLASSES - 1)] == NUM_CLASSES - 2).all()
    middle = flipped & (LABELS == 5)
    assert set(noisy[middle]) == {4, 6}


def test_two_classes():
    labels = np.array([0, 1] * 50)
    for kind in KINDS:
        noisy, flipped = inject_noise(labels, kind, 0.3, 2, seed=0)
        assert flipped.sum() == 30 and np.array_equal(noisy[flipped], 1 - labels[flipped])


def test_instance_targets_most_confusable_class_and_prefers_confused_samples():
    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(NUM_CLASSES), size=len(LABELS))
    noisy, flipped = inject_noise(LABELS, "instance", 0.3, NUM_CLASSES, seed=0, probs=probs)
    others = probs.copy()
    others[np.arange(len(LABELS)), LABELS] = -1
    assert np.array_equal(noisy[flipped], others.argmax(axis=1)[flipped])
    odds = others.max(axis=1) / probs[np.arange(len(LABELS)), LABELS]
    assert (odds[flipped] > np.median(odds)).mean() > 0.75


def test_instance_never_picks_zero_confusion_while_others_remain():
    probs = np.zeros((10, 3))
    labels = np.arange(10) % 3
    probs[np.arange(10), labels] = 1.0
    probs[[1, 2, 3, 5], [0, 0, 1, 1]] = 0.4
    noisy, flipped = inject_noise(labels, "instance", 0.4, 3, seed=0, probs=probs)
    assert np.flatnonzero(flipped).tolist() == [1, 2, 3, 5]
    assert noisy[[1, 2, 3, 5]].tolist() == [0, 0, 1, 1]


def test_instance_fallback_without_probs_is_class_structured():
    labels = np.repeat(np.arange(NUM_CLASSES), 200)
    noisy, flipped = inject_noise(labels, "instance", 0.3, NUM_CLASSES, seed=0)
    assert flipped.sum() == 600
    top_share = []
    for cls in range(NUM_CLASSES):
        targets = noisy[flipped & (labels == cls)]
        top_share.append(np.bincount(targets, minlength=NUM_CLASSES).max() / max(len(targets), 1))
    assert np.mean(top_share) > 0.3


@pytest.mark.parametrize(
    "probs",
    [
        np.ones((5, NUM_CLASSES)),
        -np.ones((len(LABELS), NUM_CLASSES)),
        np.full((len(LABELS), NUM_CLASSES), np.nan),
    ],
)
def test_bad_probs(probs):
    with pytest.raises(ConfigError, match="probs"):
        inject_noise(LABELS, "instance", 0.2, NUM_CLASSES, seed=0, probs=probs)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="outside"):
        inject_noise(LABELS, "uniform", 0.95, NUM_CLASSES, seed=0)
    with pytest.raises(ConfigError, match="outside"):
        inject_noise(LABELS, "uniform", -0.1, NUM_CLASSES, seed=0)
    with pytest.raises(ConfigError, match="unknown noise kind"):
        inject_noise(LABELS, "gaussian", 0.1, NUM_CLASSES, seed=0)
    with pytest.raises(ConfigError, match="seed"):
        inject_noise(LABELS, "uniform", 0.1, NUM_CLASSES, seed=None)
    with pytest.raises(ConfigError, match="lie in"):
        inject_noise(LABELS, "uniform", 0.1, 5, seed=0)
    with pytest.raises(ConfigError, match="only apply to instance"):
        inject_noise(LABELS, "uniform", 0.1, NUM_CLASSES, seed=0, probs=np.ones((len(LABELS), NUM_CLASSES)))
    with pytest.raises(ConfigError, match="only applies to asymmetric"):
        inject_noise(LABELS, "uniform", 0.1, NUM_CLASSES, seed=0, pair_map={0: 1})


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("uniform:0.3", ("uniform", 0.3)), (" Asymmetric : 40% ", ("asymmetric", 0.4)),
     ("adjacent:0", ("adjacent", 0.0)), ("instance:0.9", ("instance", 0.9))],
)  # fmt: skip
def test_parse_noise_spec(spec, expected):
    kind, rate = parse_noise_spec(spec)
    assert kind == expected[0] and rate == pytest.approx(expected[1])


@pytest.mark.parametrize(
    "spec",
    ["uniform", "uniform:", "uniform:abc", "uniform:0.95", "uniform:-1", "pink:0.2", "a:b:c", "uniform:nan", "", None],
)
def test_parse_noise_spec_errors(spec):
    with pytest.raises(ConfigError):
        parse_noise_spec(spec)


def test_apply_noise_on_digits():
    clean = load_dataset("digits")
    noisy = apply_noise(clean, "uniform", 0.2, 11)
    assert np.array_equal(noisy.true_labels, clean.y)
    assert np.array_equal(noisy.is_mislabeled, noisy.y != clean.y)
    assert noisy.is_mislabeled.sum() == round(0.2 * len(clean))
    assert noisy.meta["noise"] == "uniform" and noisy.meta["rate"] == 0.2 and noisy.meta["seed"] == 11
    assert clean.true_labels is None and "noise" not in clean.meta
    assert noisy.x is clean.x and noisy.sample_ids == clean.sample_ids

    twice = apply_noise(noisy, "adjacent", 0.1, 12)
    assert np.array_equal(twice.true_labels, clean.y)
    assert np.array_equal(twice.is_mislabeled, twice.y != clean.y)


def test_apply_noise_keeps_known_flags(tmp_path):
    x = np.zeros((10, 2))
    np.savez(tmp_path / "flagged.npz", x=x, y=np.arange(10) % 2, flags=np.eye(10, dtype=bool)[0])
    noisy = apply_noise(load_dataset(tmp_path / "flagged.npz"), "uniform", 0.0, 0)
    assert noisy.is_mislabeled.tolist() == [True] + [False] * 9


def test_stratified_choice_is_exact_and_proportional():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10)
    picked = stratified_choice(labels, 10, np.random.default_rng(0))
    assert len(picked) == len(set(picked)) == 10
    assert np.bincount(labels[picked]).tolist() == [7, 2, 1]
