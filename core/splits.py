"""Train/validation splits of an audit: a fixed stratified split, the folds of a rotating one
(epoch e holds out fold (e − 1) mod K), or a trusted set held out as the validation split."""

from __future__ import annotations

import numpy as np

from core.dynamics import SPLIT_TRAIN, SPLIT_VAL
from core.errors import ConfigError


def make_split(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Stratified, seeded train/validation assignment: uint8 [N] of SPLIT_TRAIN / SPLIT_VAL."""
    split = np.full(len(labels), SPLIT_TRAIN, dtype=np.uint8)
    if val_fraction == 0:
        return split
    rng = np.random.default_rng(seed)
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(round(val_fraction * len(members)))
        if len(members) > 1:
            split[members[: min(n_val, len(members) - 1)]] = SPLIT_VAL
    if not (split == SPLIT_VAL).any():
        raise ConfigError("the validation split is empty: raise the validation fraction or add samples")
    return split


def make_folds(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """The folds of a rotating validation split: int64 [N] fold ids in 0..K−1, K = round(1 /
    val_fraction), stratified and seeded (each class dealt round-robin from a shuffled order, the
    dealing continuing across classes so that small classes spread over the folds)."""
    folds = int(round(1 / val_fraction))
    if folds < 2:
        raise ConfigError("a rotating validation split needs at least 2 folds: lower the validation fraction")
    if len(labels) < folds:
        raise ConfigError(f"a rotating validation split of {folds} folds needs at least {folds} samples")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    start = 0
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        fold_of[members] = (start + np.arange(len(members))) % folds
        start = (start + len(members)) % folds
    return fold_of


def trusted_split(num_samples: int, trusted_index: np.ndarray) -> np.ndarray:
    """The split of an audit with a trusted set: the trusted samples are the validation split,
    held out from training (LiLAW's meta-validation set, as Algorithm 1 holds its validation set
    out; FBR's clean set), every other sample is trained on."""
    split = np.full(num_samples, SPLIT_TRAIN, dtype=np.uint8)
    split[trusted_index] = SPLIT_VAL
    if not (split == SPLIT_TRAIN).any():
        raise ConfigError("every sample is in the trusted set: none is left to train on")
    return split


def trusted_arrays(trusted: dict[int, int], num_samples: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """A trusted set {sample index: trusted label} as (indices, labels), int64, by index; a
    ConfigError names indices or labels out of range."""
    if not trusted:
        raise ConfigError("the trusted set is empty")
    index = np.array(sorted(trusted), dtype=np.int64)
    labels = np.array([trusted[i] for i in index.tolist()], dtype=np.int64)
    bad = index[(index < 0) | (index >= num_samples)]
    if len(bad):
        raise ConfigError(f"trusted sample indices out of range [0, {num_samples}): {bad[:5].tolist()}")
    bad = labels[(labels < 0) | (labels >= num_classes)]
    if len(bad):
        raise ConfigError(f"trusted labels out of range [0, {num_classes}): {sorted(set(bad.tolist()))[:5]}")
    return index, labels


def split_of_epoch(folds: np.ndarray, epoch: int) -> np.ndarray:
    """A rotating split's train/validation assignment in `epoch` (1-based): fold (epoch − 1) mod K
    held out, the others trained on."""
    held_out = folds == (epoch - 1) % (int(folds.max()) + 1)
    return np.where(held_out, SPLIT_VAL, SPLIT_TRAIN).astype(np.uint8)
