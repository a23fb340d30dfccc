"""Scores over synthetic training dynamics: orientation, hand-computed cases, cleanlab agreement;
the registry that declares them, and the README table rendered from it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from sklearn.metrics import roc_auc_score

from core.dynamics import FLOAT_FIELDS, OPTIONAL_FLOAT_FIELDS, SPLIT_TRAIN, DynamicsHistory, EpochDynamics
from core.score_registry import (
    CLEANLAB_SCORE_NAMES,
    EPOCH_SCORE_NAMES,
    ORIENTATION,
    SCORE_NAMES,
    SCORES,
    offered_score_names,
)
from core.scores import cleanlab_label_issues, compute_scores, epoch_scores, rank_scores

README = Path(__file__).resolve().parents[2] / "README.md"

NUM_SAMPLES, NUM_CLASSES, NUM_EPOCHS = 300, 5, 6
ALPHA, BETA, DELTA = 10.0, 2.0, 6.0


def _softmax(logits):
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _epoch(epoch, logits, labels):
    rows = np.arange(len(labels))
    s = _softmax(logits)
    s_y, s_max = s[rows, labels], s.max(axis=1)
    others = logits.copy()
    others[rows, labels] = -np.inf
    onehot = np.eye(logits.shape[1])[labels]
    w_alpha = _sigmoid(ALPHA * s_y - s_max)
    w_beta = _sigmoid(-(BETA * s_y - s_max))
    w_delta = np.exp(-((DELTA * s_y - s_max) ** 2) / 2)
    return EpochDynamics(
        epoch=epoch,
        sample_index=rows,
        split=np.full(len(labels), SPLIT_TRAIN, dtype=np.uint8),
        w_alpha=w_alpha,
        w_beta=w_beta,
        w_delta=w_delta,
        w=w_alpha + w_beta + w_delta,
        loss=-np.log(s_y),
        p_label=s_y,
        p_max=s_max,
        predicted=s.argmax(axis=1),
        margin=logits[rows, labels] - others.max(axis=1),
        el2n=np.linalg.norm(s - onehot, axis=1),
    )


@pytest.fixture(scope="module")
def noisy_run():
    """A model that learns the true class over epochs while 30% of the given labels are wrong."""
    rng = np.random.default_rng(0)
    true = rng.integers(0, NUM_CLASSES, NUM_SAMPLES)
    is_mislabeled = rng.random(NUM_SAMPLES) < 0.3
    labels = true.copy()
    labels[is_mislabeled] = (true[is_mislabeled] + rng.integers(1, NUM_CLASSES, is_mislabeled.sum())) % NUM_CLASSES
    epochs = []
    for epoch in range(1, NUM_EPOCHS + 1):
        logits = rng.normal(0.0, 1.0, (NUM_SAMPLES, NUM_CLASSES))
        logits[np.arange(NUM_SAMPLES), true] += 0.8 * epoch
        epochs.append(_epoch(epoch, logits, labels))
    oos_logits = rng.normal(0.0, 1.0, (NUM_SAMPLES, NUM_CLASSES))
    oos_logits[np.arange(NUM_SAMPLES), true] += 3.0
    return DynamicsHistory.stack(epochs), labels, is_mislabeled, _softmax(oos_logits)


def _history(num_epochs, num_samples, **fields):
    """A hand-made history: given fields as [E, N] arrays, the rest zeros."""
    shape = (num_epochs, num_samples)
    arrays = {name: np.zeros(shape) for name in FLOAT_FIELDS}
    arrays["predicted"] = np.zeros(shape, dtype=np.int64)
    arrays.update({name: np.asarray(value) for name, value in fields.items()})
    return DynamicsHistory(
        epochs=np.arange(1, num_epochs + 1),
        split=np.zeros(num_samples, dtype=np.uint8),
        **arrays,
    )


def test_score_names_and_orientation_are_complete():
    assert SCORE_NAMES == (
        "w_alpha", "w_beta", "w_delta", "w", "aum", "datamaps_confidence", "datamaps_variability",
        "dataiq_aleatoric", "el2n", "loss", "forgetting", "cl_self_confidence", "cl_normalized_margin",
        "fbr_agreement",
    )
    signs = {name: entry["sign"] for name, entry in ORIENTATION.items()}
    assert signs == {
        "w_alpha": "-", "w_beta": "+", "w_delta": "+", "w": "+", "aum": "-", "datamaps_confidence": "-",
        "datamaps_variability": "-", "dataiq_aleatoric": "-", "el2n": "+", "loss": "+", "forgetting": "+",
        "cl_self_confidence": "-", "cl_normalized_margin": "-", "fbr_agreement": "-",
    }
    assert all(entry["description"] for entry in ORIENTATION.values())
    assert EPOCH_SCORE_NAMES == (
        "w_alpha", "w_beta", "w_delta", "w", "aum", "datamaps_confidence", "el2n", "loss", "fbr_agreement",
    )
    assert CLEANLAB_SCORE_NAMES == ("cl_self_confidence", "cl_normalized_margin")


def test_every_per_epoch_score_is_a_recorded_dynamics_field():
    assert all(score.epoch_field in (*FLOAT_FIELDS, *OPTIONAL_FLOAT_FIELDS) for score in SCORES if score.epoch_field)
    assert not any(score.epoch_field for score in SCORES if score.cross_fit)
    # A score of an optional field belongs to the runs that record it.
    assert all(score.weighting for score in SCORES if score.epoch_field in OPTIONAL_FLOAT_FIELDS)


def test_a_jobs_config_decides_which_scores_it_offers():
    plain = offered_score_names({"weighting": "lilaw"})
    assert "fbr_agreement" not in plain and not set(plain) & set(CLEANLAB_SCORE_NAMES)
    assert "fbr_agreement" in offered_score_names({"weighting": "fbr"})
    assert set(CLEANLAB_SCORE_NAMES) <= set(offered_score_names({"cross_fit": 5}))
    assert offered_score_names({}) == plain  # a stored config without the field: LiLAW, the default


def test_the_readme_score_table_is_the_registrys():
    """The README's table is `python -m core.score_registry`'s output, pasted: regenerate it
    when a score changes."""
    printed = subprocess.run(
        [sys.executable, "-m", "core.score_registry"], capture_output=True, text=True, check=True,
        cwd=README.parent,
    ).stdout
    assert printed.startswith("| score |") and printed in README.read_text()


def test_the_registry_and_the_scores_load_without_heavy_libraries():
    """The light API client imports the registry; `core.scores` loads cleanlab only when asked."""
    heavy = ("torch", "sqlalchemy", "cleanlab", "pandas")
    code = f"import sys, core.score_registry, core.scores; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=README.parent
    ).stdout
    assert loaded.strip() == "[]"


@pytest.mark.parametrize(
    "name",
    ["w_alpha", "aum", "datamaps_confidence", "datamaps_variability", "dataiq_aleatoric", "el2n", "loss", "forgetting",
     *CLEANLAB_SCORE_NAMES],
)
def test_mislabeled_samples_rank_on_top(noisy_run, name):
    history, labels, is_mislabeled, oos_probs = noisy_run
    scores = compute_scores(history, oos_probs=oos_probs, labels=labels)
    assert roc_auc_score(is_mislabeled, scores[name]) > 0.9


def test_scores_are_float64_per_sample_in_score_name_order(noisy_run):
    history, labels, _, oos_probs = noisy_run
    scores = compute_scores(history, oos_probs=oos_probs, labels=labels)
    assert tuple(scores) == tuple(name for name in SCORE_NAMES if name != "fbr_agreement")  # no FBR here
    assert all(v.shape == (NUM_SAMPLES,) and v.dtype == np.float64 for v in scores.values())


def test_cleanlab_scores_absent_without_oos_probs(noisy_run):
    history, labels, _, _ = noisy_run
    for kwargs in ({}, {"labels": labels}):
        scores = compute_scores(history, **kwargs)
        assert tuple(scores) == offered_score_names({"weighting": "lilaw"})


def test_lilaw_weight_scores_follow_documented_formula(noisy_run):
    history, *_ = noisy_run
    scores = compute_scores(history, first_epoch=2, last_epoch=5)
    window = slice(1, 5)
    assert np.allclose(scores["w_alpha"], -history.w_alpha[window].mean(axis=0))
    assert np.allclose(scores["w_beta"], history.w_beta[window].mean(axis=0))
    assert np.allclose(scores["w_delta"], history.w_delta[window].mean(axis=0))
    assert np.allclose(scores["w"], history.w[window].mean(axis=0))
    assert [ORIENTATION[n]["sign"] for n in ("w_alpha", "w_beta", "w_delta", "w")] == ["-", "+", "+", "+"]


def test_window_aggregates_only_its_epochs(noisy_run):
    history, *_ = noisy_run
    scores = compute_scores(history, first_epoch=3)
    assert np.allclose(scores["loss"], history.loss[2:].mean(axis=0))
    assert np.allclose(scores["aum"], -history.margin[2:].mean(axis=0))
    assert np.allclose(scores["datamaps_confidence"], -history.p_label[2:].mean(axis=0))


def test_row_order_does_not_matter(noisy_run):
    history, labels, _, _ = noisy_run
    order = np.random.default_rng(6).permutation(NUM_EPOCHS)
    shuffled = DynamicsHistory(
        epochs=history.epochs[order],
        split=history.split,
        **{name: getattr(history, name)[order] for name in (*FLOAT_FIELDS, "predicted")},
    )
    expected = compute_scores(history, labels=labels, first_epoch=2)
    actual = compute_scores(shuffled, labels=labels, first_epoch=2)
    for name, value in expected.items():
        assert np.allclose(actual[name], value), name


def test_epoch_scores_equal_a_one_epoch_window(noisy_run):
    history, *_ = noisy_run
    single = epoch_scores(history, 4)
    window = compute_scores(history, first_epoch=4, last_epoch=4)
    assert tuple(single) == tuple(name for name in EPOCH_SCORE_NAMES if name != "fbr_agreement")
    for name in single:
        assert np.array_equal(single[name], window[name])
    assert np.allclose(single["w_alpha"], -history.w_alpha[3])


def test_forgetting_counts_events_and_ranks_never_learned_first():
    labels = np.array([0, 0, 0, 0, 0])
    correct = np.array(
        [
            [1, 1, 0, 0, 1],
            [1, 0, 0, 1, 0],
            [1, 1, 0, 0, 0],
            [1, 0, 0, 0, 0],
        ],
        dtype=bool,
    )
    history = _history(4, 5, predicted=np.where(correct, 0, 1), margin=np.where(correct, 1.0, -1.0))
    expected = [0, 2, 5, 1, 1]
    assert compute_scores(history, labels=labels)["forgetting"].tolist() == expected
    assert compute_scores(history)["forgetting"].tolist() == expected
    assert compute_scores(history, labels=labels, first_epoch=2)["forgetting"].tolist() == [0, 1, 4, 1, 4]


def test_variability_aleatoric_and_el2n_by_hand():
    p_label = np.array([[0.2, 0.9], [0.4, 0.9], [0.6, 0.9], [0.8, 0.9]])
    el2n = np.array([[0.1, 0.0], [0.3, 0.0], [0.5, 0.0], [0.7, 0.0]])
    scores = compute_scores(_history(4, 2, p_label=p_label, el2n=el2n))
    assert scores["datamaps_variability"] == pytest.approx([-np.sqrt(0.05), 0.0])
    assert scores["dataiq_aleatoric"] == pytest.approx([-0.2, -0.09])
    assert scores["el2n"] == pytest.approx([0.4, 0.0])
    assert scores["datamaps_confidence"] == pytest.approx([-0.5, -0.9])


def test_cl_scores_match_cleanlab(noisy_run):
    history, labels, _, oos_probs = noisy_run
    scores = compute_scores(history, oos_probs=oos_probs, labels=labels)
    self_confidence = get_label_quality_scores(labels, oos_probs, method="self_confidence")
    normalized_margin = get_label_quality_scores(labels, oos_probs, method="normalized_margin")
    assert np.allclose(scores["cl_self_confidence"], 1.0 - self_confidence)
    assert np.allclose(scores["cl_normalized_margin"], 1.0 - 2.0 * normalized_margin)


def test_cleanlab_label_issues_is_find_label_issues_default(noisy_run):
    _, labels, is_mislabeled, oos_probs = noisy_run
    issues = cleanlab_label_issues(oos_probs, labels)
    assert issues.dtype == bool
    assert np.array_equal(issues, find_label_issues(labels, oos_probs))
    assert roc_auc_score(is_mislabeled, issues) > 0.8


def test_rank_scores_ties_by_index_and_nan_last():
    ranks = rank_scores(np.array([0.5, 0.9, 0.5, np.nan, 0.9, -np.inf]))
    assert ranks.dtype == np.int64
    assert ranks.tolist() == [3, 1, 4, 6, 2, 5]
    assert rank_scores(np.array([2, 5, 5, 0], dtype=np.uint8)).tolist() == [3, 1, 2, 4]
    assert rank_scores(np.array([])).tolist() == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"first_epoch": 0}, "first_epoch must be >= 1"),
        ({"first_epoch": 4, "last_epoch": 2}, "before first_epoch"),
        ({"last_epoch": 9}, "epoch 9 was not recorded"),
        ({"first_epoch": 1.5}, "first_epoch must be an integer"),
        ({"oos_probs": np.full((3, 2), 0.5)}, "without labels"),
        ({"labels": np.array([0, 1])}, "labels has 2 entries, expected 3"),
        ({"labels": np.array([0, 1, -1])}, "labels must be >= 0"),
        ({"labels": np.array([0.0, 1.0, 1.0])}, "labels must be integers"),
        ({"labels": np.array([0, 1, 2]), "oos_probs": np.full((3, 2), 0.5)}, "out of range for 2 classes"),
        ({"labels": np.array([0, 1, 1]), "oos_probs": np.full((2, 2), 0.5)}, "oos_probs has 2 rows"),
        ({"labels": np.array([0, 1, 1]), "oos_probs": np.full((3, 2), 3.0)}, "rows must sum to 1"),
        ({"labels": np.array([0, 1, 1]), "oos_probs": np.full((3, 1), 1.0)}, "at least 2 classes"),
    ],
)
def test_compute_scores_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        compute_scores(_history(3, 3), **kwargs)


def test_history_shape_and_gaps_are_rejected():
    history = _history(3, 4)
    history.loss = np.zeros((3, 5))
    with pytest.raises(ValueError, match="history.loss has shape"):
        compute_scores(history)
    gappy = _history(3, 4)
    gappy.epochs = np.array([1, 2, 4])
    with pytest.raises(ValueError, match=r"epochs \[3\] are missing"):
        compute_scores(gappy)
    assert compute_scores(gappy, first_epoch=4)["loss"].shape == (4,)
    with pytest.raises(ValueError, match="epoch 7 was not recorded"):
        epoch_scores(gappy, 7)
    with pytest.raises(ValueError, match="score must be 1-D"):
        rank_scores(np.zeros((2, 2)))
