"""Per-sample mislabel scores computed from recorded training dynamics.

Every score is oriented so that HIGHER = MORE SUSPICIOUS (more likely mislabeled). Which scores
there are, the sign each applies to its raw quantity and the dynamics field of each per-epoch
score are declared in `core.score_registry`; this module does the arithmetic.

Scores come from one `DynamicsHistory` (arrays [E, N], row e = epoch e+1) at no extra training
cost: LiLAW's weights, the baselines of the paper's Table 16 (AUM, DataMaps, Data-IQ, EL2N, loss,
forgetting) and, when out-of-sample probabilities from cross-fitting are given, cleanlab's
confident-learning scores. The public functions validate their inputs and raise `ValueError`
naming the problem; small `_compute_*` helpers do the arithmetic. numpy only (cleanlab is
imported by `cleanlab_label_issues` alone).
"""

from __future__ import annotations

import numpy as np

from core.dynamics import FLOAT_FIELDS, OPTIONAL_FLOAT_FIELDS, DynamicsHistory
from core.score_registry import EPOCH_SCORE_NAMES, SCORE_BY_NAME, SCORE_NAMES, SCORES

_PROB_SUM_TOLERANCE = 1e-2


def compute_scores(
    history: DynamicsHistory,
    *,
    first_epoch: int = 1,
    last_epoch: int | None = None,
    oos_probs: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Every score in `SCORE_NAMES` for every sample, aggregated over epochs first..last (1-based,
    inclusive; `last_epoch=None` means the last recorded epoch). Arrays are float64 [N].

    `labels` (the given labels, int [N]) decide correctness for `forgetting`; without them a sample
    counts as correct when its margin is positive, which is the same except on exact logit ties.
    The two `cl_*` scores are present only when both `oos_probs` (N x C out-of-sample probabilities)
    and `labels` are given; a score of an optional dynamics field (`fbr_agreement`) only when the
    history has that field.
    """
    _validate_history(history)
    rows = _window_rows(history, first_epoch, last_epoch)
    num_samples = history.num_samples
    if oos_probs is not None:
        if labels is None:
            raise ValueError("oos_probs were given without labels; cleanlab scores need both")
        probs = check_probs(oos_probs, num_samples, name="oos_probs")
        labels = check_labels(labels, num_samples, num_classes=probs.shape[1])
    elif labels is not None:
        labels = check_labels(labels, num_samples)

    p_label = history.p_label[rows].astype(np.float64)
    scores = _compute_mean_scores(history, rows)
    scores["datamaps_variability"] = _oriented("datamaps_variability", _compute_variability(p_label))
    scores["dataiq_aleatoric"] = _oriented("dataiq_aleatoric", _compute_aleatoric(p_label))
    scores["forgetting"] = _oriented("forgetting", _compute_forgetting(_compute_correct(history, rows, labels)))
    if oos_probs is not None:
        scores["cl_self_confidence"] = _compute_self_confidence(probs, labels)
        scores["cl_normalized_margin"] = _compute_normalized_margin(probs, labels)
    return {name: scores[name] for name in SCORE_NAMES if name in scores}


def split_groups(history: DynamicsHistory, first_epoch: int = 1, last_epoch: int | None = None) -> np.ndarray:
    """Each sample's split group over epochs first..last: int64 [N], samples of one group held
    out in the same epochs of the window (a fixed split: train and validation; a rotating one:
    one group per fold, with those never held out in the window as one more)."""
    rows = _window_rows(history, first_epoch, last_epoch)
    splits = history.epoch_split[rows] if history.epoch_split is not None else np.asarray(history.split)[None, :]
    _, groups = np.unique(np.asarray(splits).T, axis=0, return_inverse=True)
    return groups.reshape(-1).astype(np.int64)


def calibrate_within_groups(scores: dict[str, np.ndarray], groups: np.ndarray) -> dict[str, np.ndarray]:
    """Every score of the smaller groups mapped by quantile onto the largest group's values: a
    held-out sample gets the value that the trained sample at the same place among its own group
    has, so a sample's place within its split decides, not its split. The largest group (the
    trained samples) keeps its values, so scores keep their units (an `aum` above 0 is still a
    negative mean margin). Order within a group is kept (ties stay ties); NaN stays NaN."""
    groups = np.asarray(groups)
    reference_group = np.bincount(groups).argmax()
    calibrated = {}
    for name, score in scores.items():
        values = np.asarray(score, dtype=np.float64)
        if values.shape != groups.shape:
            raise ValueError(f"score {name!r} has shape {values.shape}, the groups {groups.shape}")
        out = values.copy()
        reference = values[(groups == reference_group) & np.isfinite(values)]
        for group in np.unique(groups):
            members = np.flatnonzero((groups == group) & np.isfinite(values))
            if group == reference_group or not len(members) or not len(reference):
                continue
            quantiles = (_average_ranks(values[members]) - 0.5) / len(members)
            out[members] = np.quantile(reference, quantiles)
        calibrated[name] = out
    return calibrated


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ascending ranks, ties given their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse.reshape(-1), weights=ranks)
    return (sums / counts)[inverse.reshape(-1)]


def epoch_scores(history: DynamicsHistory, epoch: int) -> dict[str, np.ndarray]:
    """The single-epoch scores (`EPOCH_SCORE_NAMES`: the LiLAW weights, aum, datamaps_confidence,
    el2n, loss; fbr_agreement when the history has it) at one recorded epoch (1-based), oriented
    and named as in `compute_scores`."""
    _validate_history(history)
    rows = _window_rows(history, epoch, epoch)
    scores = _compute_mean_scores(history, rows)
    return {name: scores[name] for name in EPOCH_SCORE_NAMES if name in scores}


def cleanlab_label_issues(oos_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """cleanlab's `find_label_issues` with its defaults (filter_by="prune_by_noise_rate"): a bool
    mask [N], True = label issue. Runs single-process (`n_jobs=1`; cleanlab's result does not
    depend on it) so it also works inside daemonic worker processes."""
    from cleanlab.filter import find_label_issues  # heavy; only this function needs it

    probs = check_probs(oos_probs, name="oos_probs")
    labels = check_labels(labels, probs.shape[0], num_classes=probs.shape[1])
    return np.asarray(find_label_issues(labels, probs, n_jobs=1), dtype=bool)


def rank_scores(score: np.ndarray) -> np.ndarray:
    """Rank of every sample, 1 = most suspicious (highest score). Ties keep sample-index order
    (stable); NaN scores rank last. Returns int64 [N]."""
    values = np.asarray(score)
    if values.ndim != 1:
        raise ValueError(f"score must be 1-D, got shape {values.shape}")
    if values.dtype.kind in "biu":
        keys = -values.astype(np.int64)
    elif values.dtype.kind == "f":
        keys = -values.astype(np.float64)
    else:
        raise ValueError(f"score must be numeric, got dtype {values.dtype}")
    order = np.argsort(keys, kind="stable")
    ranks = np.empty(len(values), dtype=np.int64)
    ranks[order] = np.arange(1, len(values) + 1, dtype=np.int64)
    return ranks


def check_probs(probs: np.ndarray, num_samples: int | None = None, *, name: str = "probs") -> np.ndarray:
    """`probs` as float64 [N, C] after checking it holds probabilities (C >= 2, finite, rows sum
    to 1); raises ValueError otherwise."""
    values = np.asarray(probs)
    if values.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples x classes), got shape {values.shape}")
    if num_samples is not None and values.shape[0] != num_samples:
        raise ValueError(f"{name} has {values.shape[0]} rows, expected {num_samples} (one per sample)")
    if values.shape[1] < 2:
        raise ValueError(f"{name} must have at least 2 classes, got {values.shape[1]}")
    if values.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {values.dtype}")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if (values < 0).any():
        raise ValueError(f"{name} contains negative values; expected probabilities, not logits")
    if not np.allclose(values.sum(axis=1), 1.0, rtol=0.0, atol=_PROB_SUM_TOLERANCE):
        raise ValueError(f"{name} rows must sum to 1; expected probabilities, not logits")
    return values


def check_labels(labels: np.ndarray, num_samples: int, *, num_classes: int | None = None) -> np.ndarray:
    """`labels` as int64 [N] after checking length and range [0, num_classes); raises ValueError."""
    values = np.asarray(labels)
    if values.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {values.shape}")
    if len(values) != num_samples:
        raise ValueError(f"labels has {len(values)} entries, expected {num_samples} (one per sample)")
    if values.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers, got dtype {values.dtype}")
    values = values.astype(np.int64)
    if len(values) and values.min() < 0:
        raise ValueError(f"labels must be >= 0, got {values.min()}")
    if num_classes is not None and len(values) and values.max() >= num_classes:
        raise ValueError(f"label {values.max()} is out of range for {num_classes} classes")
    return values


def _validate_history(history: DynamicsHistory) -> None:
    epochs = np.asarray(history.epochs)
    if epochs.ndim != 1 or len(epochs) == 0:
        raise ValueError(f"history.epochs must be a non-empty 1-D array, got shape {epochs.shape}")
    if epochs.dtype.kind not in "iu":
        raise ValueError(f"history.epochs must be integers, got dtype {epochs.dtype}")
    if len(np.unique(epochs)) != len(epochs):
        raise ValueError(f"history.epochs has duplicate epochs: {epochs.tolist()}")
    shape = np.shape(history.w_alpha)
    if len(shape) != 2 or shape[0] != len(epochs):
        raise ValueError(f"history.w_alpha must be [epochs={len(epochs)}, samples], got shape {shape}")
    for name in (*FLOAT_FIELDS, "predicted", *OPTIONAL_FLOAT_FIELDS):
        values = getattr(history, name)
        if values is None and name in OPTIONAL_FLOAT_FIELDS:
            continue
        field_shape = np.shape(values)
        if field_shape != shape:
            raise ValueError(f"history.{name} has shape {field_shape}, expected {shape}")


def _window_rows(history: DynamicsHistory, first_epoch: int, last_epoch: int | None) -> np.ndarray:
    """Row indices of epochs first..last, in epoch order; every epoch in the window must exist."""
    epochs = np.asarray(history.epochs)
    recorded = int(epochs.max())
    if last_epoch is None:
        last_epoch = recorded
    for name, value in (("first_epoch", first_epoch), ("last_epoch", last_epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1 (epochs are 1-based), got {value}")
    if last_epoch < first_epoch:
        raise ValueError(f"last_epoch ({last_epoch}) is before first_epoch ({first_epoch})")
    if last_epoch > recorded:
        raise ValueError(f"epoch {last_epoch} was not recorded; the last recorded epoch is {recorded}")
    missing = sorted(set(range(int(first_epoch), int(last_epoch) + 1)) - set(epochs.tolist()))
    if missing:
        raise ValueError(f"epochs {missing} are missing from the history")
    in_window = np.flatnonzero((epochs >= first_epoch) & (epochs <= last_epoch))
    return in_window[np.argsort(epochs[in_window], kind="stable")]


def _compute_mean_scores(history: DynamicsHistory, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Every per-epoch score averaged over `rows`: its dynamics field's mean, with its sign (those
    of optional fields the history lacks left out)."""
    return {
        score.name: score.apply_sign(getattr(history, score.epoch_field)[rows].astype(np.float64).mean(axis=0))
        for score in SCORES
        if score.epoch_field and getattr(history, score.epoch_field) is not None
    }


def _oriented(name: str, raw: np.ndarray) -> np.ndarray:
    return SCORE_BY_NAME[name].apply_sign(raw)


def _compute_variability(p_label: np.ndarray) -> np.ndarray:
    return p_label.std(axis=0)


def _compute_aleatoric(p_label: np.ndarray) -> np.ndarray:
    return (p_label * (1.0 - p_label)).mean(axis=0)


def _compute_correct(history: DynamicsHistory, rows: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    if labels is None:
        return history.margin[rows] > 0
    return history.predicted[rows] == labels[np.newaxis, :]


def _compute_forgetting(correct: np.ndarray) -> np.ndarray:
    """Forgetting events per sample from a bool [E, N] correctness matrix; never-learned = E + 1."""
    events = (correct[:-1] & ~correct[1:]).sum(axis=0)
    never_learned = ~correct.any(axis=0)
    return np.where(never_learned, correct.shape[0] + 1, events).astype(np.float64)


def _compute_self_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return 1.0 - probs[np.arange(len(labels)), labels]


def _compute_normalized_margin(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rows = np.arange(len(labels))
    p_label = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -np.inf
    return -(p_label - others.max(axis=1))
