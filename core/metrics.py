"""Metrics: how well a suspicion score finds known mislabels, and how good a trained classifier is.

Detection metrics treat a score as "higher = more suspicious" (the orientation of `core.scores`)
and known flags as ground truth (injected noise, uploaded flags, reviewer decisions). Two AUPRC
conventions are reported and named: `auprc_mislabeled` (mislabeled = positive, the precision of the
flagged list) and `auprc_clean` (clean = positive on the negated score, the convention of the LiLAW
paper's Table 16). AUPRC is sklearn's average precision. Undefined values are None, never NaN.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from core.scores import check_labels, check_probs, rank_scores

DEFAULT_KS = (10, 50, 100)


def detection_metrics(
    score: np.ndarray,
    is_mislabeled: np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    k_fractions: Sequence[float] = (1.0,),
) -> dict:
    """AUROC, both AUPRCs and precision/recall in the top k of `score` against `is_mislabeled`.

    Returns a dict with `num_samples`, `num_mislabeled`, `noise_rate`, `auroc`,
    `auprc_mislabeled`, `auprc_clean`, `precision_at_k` / `recall_at_k` ({k: value} for each k in
    `ks`; None where k > num_samples), `precision_at_noise_count` / `recall_at_noise_count` (k =
    number of known mislabeled, where the two are equal), `precision_at_noise_fraction` /
    `recall_at_noise_fraction` ({f: value}, k = round(f * num_mislabeled)),
    `num_nonfinite_scores`, and `note` (why something is None, else None).

    The top k follows `rank_scores` (ties by sample index, NaN last). For AUROC/AUPRC, NaN scores
    count as the least suspicious, below -inf; +/-inf keep their order.
    """
    values, flags = _check_score_and_flags(score, is_mislabeled)
    ks = _check_ks(ks)
    k_fractions = _check_fractions(k_fractions)
    return _compute_detection(values, flags, ks, k_fractions)


def detection_report(
    scores: dict[str, np.ndarray],
    is_mislabeled: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    k_fractions: Sequence[float] = (1.0,),
) -> dict[str, dict]:
    """`detection_metrics` for every score in `scores`, restricted to the samples where the bool
    `mask` is True (e.g. the train split) when one is given."""
    flags = np.asarray(is_mislabeled)
    if flags.ndim != 1:
        raise ValueError(f"is_mislabeled must be 1-D, got shape {flags.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != flags.shape:
            raise ValueError(f"mask must be a bool array of shape {flags.shape}, got {mask.dtype} {mask.shape}")
        if not mask.any():
            raise ValueError("mask selects no samples")
    ks = _check_ks(ks)
    k_fractions = _check_fractions(k_fractions)
    report = {}
    for name, score in scores.items():
        score = np.asarray(score)
        if score.shape != flags.shape:
            raise ValueError(f"score {name!r} has shape {score.shape}, expected {flags.shape}")
        if mask is not None:
            score, subset = score[mask], flags[mask]
        else:
            subset = flags
        values, checked = _check_score_and_flags(score, subset)
        report[name] = _compute_detection(values, checked, ks, k_fractions)
    return report


def detection_curves(score: np.ndarray, is_mislabeled: np.ndarray, max_points: int = 200) -> dict | None:
    """The ROC curve (`fpr`, `tpr`) and the precision-recall curve with mislabeled = positive
    (`recall`, `precision`) of `score` against `is_mislabeled`, each at most `max_points` points
    (evenly thinned, ends kept), with `auroc` and `auprc_mislabeled`. None when the flags hold a
    single class (the curves are undefined). NaN scores count as the least suspicious."""
    values, flags = _check_score_and_flags(score, is_mislabeled)
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    if flags.all() or not flags.any():
        return None
    ordinal = _finite_ordinal(values) if values.dtype.kind == "f" and not np.isfinite(values).all() else values
    fpr, tpr, _ = roc_curve(flags, ordinal)
    precision, recall, _ = precision_recall_curve(flags, ordinal)
    roc_points, pr_points = _thinned(len(fpr), max_points), _thinned(len(recall), max_points)
    return {
        "auroc": float(roc_auc_score(flags, ordinal)),
        "auprc_mislabeled": float(average_precision_score(flags, ordinal)),
        "fpr": fpr[roc_points].tolist(),
        "tpr": tpr[roc_points].tolist(),
        "recall": recall[pr_points].tolist(),
        "precision": precision[pr_points].tolist(),
    }


def score_histogram(score: np.ndarray, is_mislabeled: np.ndarray, known: np.ndarray, bins: int = 40) -> dict:
    """Counts of finite `score` values in `bins` equal bins (`edges`: bins + 1 values), apart for
    samples known mislabeled, known clean and not known (`known` False)."""
    values = np.asarray(score, dtype=np.float64)
    flags, known = np.asarray(is_mislabeled, dtype=bool), np.asarray(known, dtype=bool)
    if not values.shape == flags.shape == known.shape or values.ndim != 1:
        raise ValueError("score, is_mislabeled and known must be 1-D arrays of one length")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    finite = np.isfinite(values)
    edges = np.histogram_bin_edges(values[finite], bins=bins) if finite.any() else np.linspace(0, 1, bins + 1)
    groups = {"mislabeled": known & flags, "clean": known & ~flags, "unknown": ~known}
    counts = {name: np.histogram(values[finite & group], bins=edges)[0].tolist() for name, group in groups.items()}
    return {"edges": edges.tolist(), "counts": counts}


def classifier_metrics(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1, top-5 (top-min(5, C); `top5_k` says which) accuracy and macro one-vs-rest AUROC of
    predicted probabilities `probs` [N, C] against true `labels` [N].

    `auroc` is None, with a `note`, when a class has no sample in `labels` (its one-vs-rest AUROC
    is undefined). Ties in `probs` resolve to the lower class index, as argmax does.
    """
    probs = check_probs(probs)
    if probs.shape[0] == 0:
        raise ValueError("probs has no samples")
    labels = check_labels(labels, probs.shape[0], num_classes=probs.shape[1])
    return _compute_classifier(probs, labels)


def _check_score_and_flags(score: np.ndarray, is_mislabeled: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(score)
    flags = np.asarray(is_mislabeled)
    if values.ndim != 1:
        raise ValueError(f"score must be 1-D, got shape {values.shape}")
    if flags.shape != values.shape:
        raise ValueError(f"is_mislabeled has shape {flags.shape}, expected {values.shape} like score")
    if len(values) == 0:
        raise ValueError("no samples to evaluate")
    if values.dtype.kind not in "biuf":
        raise ValueError(f"score must be numeric, got dtype {values.dtype}")
    if flags.dtype != bool:
        if flags.dtype.kind not in "iuf" or not np.isin(flags, (0, 1)).all():
            raise ValueError("is_mislabeled must be bool or 0/1")
        flags = flags.astype(bool)
    return values, flags


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    checked = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"every k must be a positive integer, got {k!r}")
        checked.append(int(k))
    return tuple(checked)


def _check_fractions(k_fractions: Sequence[float]) -> tuple[float, ...]:
    checked = []
    for f in k_fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float, np.integer, np.floating)) or not f > 0:
            raise ValueError(f"every k fraction must be a positive number, got {f!r}")
        checked.append(float(f))
    return tuple(checked)


def _compute_detection(
    score: np.ndarray, flags: np.ndarray, ks: tuple[int, ...], k_fractions: tuple[float, ...]
) -> dict:
    num_samples = len(flags)
    num_mislabeled = int(flags.sum())
    order = np.argsort(rank_scores(score), kind="stable")
    hits = np.cumsum(flags[order])
    num_nonfinite = int((~np.isfinite(score)).sum()) if score.dtype.kind == "f" else 0

    def precision(k: int) -> float | None:
        return float(hits[k - 1] / k) if 1 <= k <= num_samples else None

    def recall(k: int) -> float | None:
        if num_mislabeled == 0 or not 1 <= k <= num_samples:
            return None
        return float(hits[k - 1] / num_mislabeled)

    notes = []
    if num_mislabeled in (0, num_samples):
        which = "no sample is" if num_mislabeled == 0 else "every sample is"
        notes.append(f"{which} flagged mislabeled: AUROC and AUPRC are undefined for a single class")
        auroc = auprc_mislabeled = auprc_clean = None
    else:
        ordinal = _finite_ordinal(score) if num_nonfinite else score
        auroc = float(roc_auc_score(flags, ordinal))
        auprc_mislabeled = float(average_precision_score(flags, ordinal))
        auprc_clean = float(average_precision_score(~flags, -ordinal))
    if num_nonfinite:
        notes.append(f"{num_nonfinite} non-finite scores; NaN counts as least suspicious")
    if any(k > num_samples for k in ks):
        notes.append(f"precision/recall at k > {num_samples} samples are None")

    fraction_ks = {f: max(1, round(f * num_mislabeled)) for f in k_fractions}
    return {
        "num_samples": num_samples,
        "num_mislabeled": num_mislabeled,
        "noise_rate": num_mislabeled / num_samples,
        "auroc": auroc,
        "auprc_mislabeled": auprc_mislabeled,
        "auprc_clean": auprc_clean,
        "precision_at_k": {k: precision(k) for k in ks},
        "recall_at_k": {k: recall(k) for k in ks},
        "precision_at_noise_count": precision(num_mislabeled) if num_mislabeled else None,
        "recall_at_noise_count": recall(num_mislabeled) if num_mislabeled else None,
        "precision_at_noise_fraction": {
            f: precision(k) if num_mislabeled else None for f, k in fraction_ks.items()
        },
        "recall_at_noise_fraction": {f: recall(k) for f, k in fraction_ks.items()},
        "num_nonfinite_scores": num_nonfinite,
        "note": "; ".join(notes) or None,
    }


def _finite_ordinal(score: np.ndarray) -> np.ndarray:
    """Dense ranks of `score` (same order and ties, so the same AUROC/AP) with NaN lowest."""
    _, inverse = np.unique(score, return_inverse=True)
    ordinal = inverse.astype(np.float64) + 1.0
    ordinal[np.isnan(score)] = 0.0
    return ordinal


def _thinned(length: int, max_points: int) -> np.ndarray:
    return np.unique(np.linspace(0, length - 1, min(length, max_points)).round().astype(int))


def _compute_classifier(probs: np.ndarray, labels: np.ndarray) -> dict:
    num_samples, num_classes = probs.shape
    top_k = min(5, num_classes)
    ranked = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    in_top = ranked == labels[:, np.newaxis]
    absent = sorted(set(range(num_classes)) - set(labels.tolist()))
    note = None
    if absent:
        auroc = None
        note = f"classes {absent} have no sample: one-vs-rest AUROC is undefined"
    elif num_classes == 2:
        auroc = float(roc_auc_score(labels, probs[:, 1]))
    else:
        sums = probs.sum(axis=1, keepdims=True)
        normalized = probs if np.allclose(sums, 1.0) else probs / sums
        auroc = float(roc_auc_score(labels, normalized, multi_class="ovr", average="macro"))
    return {
        "num_samples": num_samples,
        "num_classes": num_classes,
        "top1": float(in_top[:, 0].mean()),
        "top5": float(in_top.any(axis=1).mean()),
        "top5_k": top_k,
        "auroc": auroc,
        "note": note,
    }
