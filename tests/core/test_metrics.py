"""Detection and classifier metrics agree with scikit-learn and with hand-computed values."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score, top_k_accuracy_score

from core.metrics import classifier_metrics, detection_curves, detection_metrics, detection_report, score_histogram


@pytest.fixture
def random_detection():
    rng = np.random.default_rng(1)
    flags = rng.random(500) < 0.3
    score = rng.normal(size=500) + flags
    return score, flags


def test_detection_metrics_equal_sklearn(random_detection):
    score, flags = random_detection
    result = detection_metrics(score, flags)
    assert result["auroc"] == roc_auc_score(flags, score)
    assert result["auprc_mislabeled"] == average_precision_score(flags, score)
    assert result["auprc_clean"] == average_precision_score(~flags, -score)
    assert result["num_samples"] == 500
    assert result["num_mislabeled"] == flags.sum()
    assert result["note"] is None


def test_detection_metrics_with_tied_integer_scores_equal_sklearn():
    rng = np.random.default_rng(2)
    flags = rng.integers(0, 2, 200)
    score = rng.integers(0, 4, 200)
    result = detection_metrics(score, flags)
    assert result["auroc"] == roc_auc_score(flags, score)
    assert result["auprc_mislabeled"] == average_precision_score(flags, score)
    assert result["auprc_clean"] == average_precision_score(1 - flags, -score)


def test_precision_and_recall_at_k_by_hand():
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    flags = np.array([1, 0, 1, 1, 0, 0], dtype=bool)
    result = detection_metrics(score, flags, ks=(1, 2, 3, 10), k_fractions=(1.0, 0.34))
    assert result["precision_at_k"] == {1: 1.0, 2: 0.5, 3: pytest.approx(2 / 3), 10: None}
    assert result["recall_at_k"] == {1: pytest.approx(1 / 3), 2: pytest.approx(1 / 3), 3: pytest.approx(2 / 3), 10: None}
    assert result["precision_at_noise_count"] == pytest.approx(2 / 3)
    assert result["recall_at_noise_count"] == pytest.approx(2 / 3)
    assert result["precision_at_noise_fraction"] == {1.0: pytest.approx(2 / 3), 0.34: 1.0}
    assert "k > 6" in result["note"]


def test_precision_at_k_breaks_ties_by_sample_index():
    result = detection_metrics(np.array([1.0, 1.0, 0.0]), np.array([0, 1, 0]), ks=(1, 2))
    assert result["precision_at_k"] == {1: 0.0, 2: 0.5}


@pytest.mark.parametrize("flag", [False, True])
def test_single_class_flags_give_none_with_a_note(flag):
    result = detection_metrics(np.arange(20.0), np.full(20, flag), ks=(5,))
    assert result["auroc"] is None
    assert result["auprc_mislabeled"] is None
    assert result["auprc_clean"] is None
    assert "single class" in result["note"]
    assert result["precision_at_k"] == {5: 1.0 if flag else 0.0}
    if not flag:
        assert result["recall_at_k"] == {5: None}
        assert result["precision_at_noise_count"] is None


def test_nan_scores_count_as_least_suspicious():
    score = np.array([np.nan, 0.9, 0.1, 0.5, np.inf])
    flags = np.array([1, 1, 0, 0, 0])
    result = detection_metrics(score, flags, ks=(1, 5))
    assert result["num_nonfinite_scores"] == 2
    assert result["auroc"] == roc_auc_score(flags, [-1.0, 0.9, 0.1, 0.5, 2.0])
    assert result["auprc_mislabeled"] == average_precision_score(flags, [-1.0, 0.9, 0.1, 0.5, 2.0])
    assert result["precision_at_k"] == {1: 0.0, 5: 0.4}
    assert "non-finite" in result["note"]


def test_detection_report_per_score_and_mask(random_detection):
    score, flags = random_detection
    mask = np.arange(500) % 2 == 0
    report = detection_report({"a": score, "b": -score}, flags, mask=mask)
    assert list(report) == ["a", "b"]
    assert report["a"] == detection_metrics(score[mask], flags[mask])
    assert report["b"]["auroc"] == pytest.approx(1.0 - report["a"]["auroc"])
    assert report["a"]["num_samples"] == 250


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: detection_metrics(np.zeros(3), np.array([0, 1, 2])), "bool or 0/1"),
        (lambda: detection_metrics(np.zeros(3), np.zeros(4)), "is_mislabeled has shape"),
        (lambda: detection_metrics(np.zeros(0), np.zeros(0)), "no samples"),
        (lambda: detection_metrics(np.zeros(3), np.zeros(3), ks=(0,)), "positive integer"),
        (lambda: detection_report({"x": np.zeros(2)}, np.zeros(3)), "score 'x' has shape"),
        (lambda: detection_report({"x": np.zeros(3)}, np.zeros(3), mask=np.zeros(3, bool)), "no samples"),
        (lambda: detection_report({"x": np.zeros(3)}, np.zeros(3), mask=np.ones(3)), "mask must be a bool"),
    ],
)
def test_detection_rejects_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _random_probs(rng, num_samples, num_classes):
    return rng.dirichlet(np.ones(num_classes), size=num_samples)


def test_classifier_metrics_equal_sklearn():
    rng = np.random.default_rng(3)
    probs = _random_probs(rng, 400, 10)
    labels = np.where(rng.random(400) < 0.6, probs.argmax(axis=1), rng.integers(0, 10, 400))
    result = classifier_metrics(probs, labels)
    assert result["top1"] == pytest.approx(np.mean(probs.argmax(axis=1) == labels))
    assert result["top5"] == pytest.approx(top_k_accuracy_score(labels, probs, k=5, labels=range(10)))
    assert result["auroc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert result["num_samples"] == 400
    assert result["top5_k"] == 5
    assert result["note"] is None


def test_classifier_metrics_binary_and_few_classes():
    rng = np.random.default_rng(4)
    probs = _random_probs(rng, 100, 2)
    labels = rng.integers(0, 2, 100)
    result = classifier_metrics(probs, labels)
    assert result["auroc"] == pytest.approx(roc_auc_score(labels, probs[:, 1]))
    assert result["top5_k"] == 2 and result["top5"] == 1.0
    three = classifier_metrics(_random_probs(rng, 30, 3), rng.integers(0, 3, 30))
    assert three["top5_k"] == 3 and three["top5"] == 1.0


def test_classifier_metrics_absent_class_gives_none_auroc():
    rng = np.random.default_rng(5)
    result = classifier_metrics(_random_probs(rng, 50, 4), rng.integers(0, 3, 50))
    assert result["auroc"] is None
    assert "[3]" in result["note"]
    assert result["top1"] is not None


def test_classifier_metrics_reject_logits_and_bad_labels():
    with pytest.raises(ValueError, match="not logits"):
        classifier_metrics(np.array([[2.0, -1.0], [0.5, 0.1]]), np.array([0, 1]))
    with pytest.raises(ValueError, match="out of range"):
        classifier_metrics(np.array([[0.5, 0.5], [0.2, 0.8]]), np.array([0, 2]))


def test_detection_curves_agree_with_the_metrics_and_are_thinned():
    rng = np.random.default_rng(0)
    flags = rng.random(2_000) < 0.3
    score = flags + rng.normal(0, 0.7, size=2_000)
    score[:5] = np.nan
    curves = detection_curves(score, flags, max_points=50)
    metrics = detection_metrics(score, flags)
    assert curves["auroc"] == pytest.approx(metrics["auroc"])
    assert curves["auprc_mislabeled"] == pytest.approx(metrics["auprc_mislabeled"])
    assert 2 < len(curves["fpr"]) == len(curves["tpr"]) <= 50
    assert len(curves["recall"]) == len(curves["precision"]) <= 50
    assert (curves["fpr"][0], curves["tpr"][0], curves["fpr"][-1], curves["tpr"][-1]) == (0, 0, 1, 1)
    assert detection_curves(score, np.zeros(2_000, dtype=bool)) is None


def test_score_histogram_counts_each_group_of_finite_scores():
    score = np.array([0.0, 0.1, 0.5, 0.9, 1.0, np.nan])
    flags = np.array([True, True, False, False, False, True])
    known = np.array([True, True, True, True, False, True])
    histogram = score_histogram(score, flags, known, bins=2)
    assert histogram["edges"] == [0.0, 0.5, 1.0]
    assert histogram["counts"] == {"mislabeled": [2, 0], "clean": [0, 2], "unknown": [0, 1]}
