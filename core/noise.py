"""Seeded label-noise injection, for evaluating an audit against known ground truth.

`inject_noise` changes exactly ``round(rate * N)`` labels, always to a different class, and
returns the noisy labels with the mask of changed samples; the input labels are the ground truth.
Every kind draws from a `numpy.random.Generator` seeded with `seed`: the same call gives the same
result. Kinds:

- ``uniform``: samples picked uniformly at random; each gets a class drawn uniformly from the
  other C-1 classes.
- ``asymmetric``: fixed class-pair flips ``c -> pair_map[c]``; the default map is
  ``c -> (c + 1) % C``. Only samples of mapped classes are flipped, spread over those classes in
  proportion to their size (stratified), so every mapped class loses about the same fraction.
- ``adjacent``: samples picked uniformly at random; each moves to a neighbouring class index,
  ``c - 1`` or ``c + 1`` at random (the only neighbour at either end of the range).
- ``instance``: instance-dependent. A sample's target is the class other than its own with the
  largest probability; its confusion is the odds of that class against its own class. Samples are
  drawn without replacement with probability proportional to their confusion (weighted sampling
  by exponential keys), so the most confusable go first. `probs` ([N, C],
  e.g. out-of-sample model probabilities) supplies the confusion; without it, synthetic
  probabilities are drawn: every class gets a random confusion profile over the other classes
  (Dirichlet), every sample a Dirichlet draw around its class's profile and a confusion level
  from Beta(2, 5). Targets then cluster on a few confusable classes per class and the flip
  chance varies from sample to sample.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from core.dataset import AuditDataset
from core.errors import ConfigError

KINDS = ("uniform", "asymmetric", "adjacent", "instance")
MAX_RATE = 0.9

Flipper = Callable[..., tuple[np.ndarray, np.ndarray]]


def parse_noise_spec(spec: str) -> tuple[str, float]:
    """Parse ``"kind:rate"`` (e.g. ``"uniform:0.3"`` or ``"asymmetric:40%"``) into (kind, rate)."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise ConfigError(f"noise spec {spec!r} must look like 'uniform:0.3' (kind:rate)")
    kind_text, rate_text = (part.strip() for part in spec.split(":"))
    kind = kind_text.lower()
    _check_kind(kind)
    rate = _parse_rate(rate_text, spec)
    _check_rate(rate)
    return kind, rate


def inject_noise(
    labels: np.ndarray,
    kind: str,
    rate: float,
    num_classes: int,
    *,
    seed: int,
    probs: np.ndarray | None = None,
    pair_map: dict[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return (noisy_labels int64 [N], is_flipped bool [N]) with exactly round(rate*N) flips."""
    _check_kind(kind)
    _check_rate(rate)
    _check_seed(seed)
    labels = _checked_labels(labels, num_classes)
    if probs is not None and kind != "instance":
        raise ConfigError(f"probs only apply to instance noise, not to {kind!r}")
    if pair_map is not None and kind != "asymmetric":
        raise ConfigError(f"pair_map only applies to asymmetric noise, not to {kind!r}")

    noisy = labels.copy()
    flipped = np.zeros(len(labels), dtype=bool)
    count = round(rate * len(labels))
    options = {"instance": {"probs": probs}, "asymmetric": {"pair_map": pair_map}}.get(kind, {})
    rng = np.random.default_rng(seed)
    chosen, targets = _FLIPPERS[kind](labels, count, num_classes, rng, **options)
    noisy[chosen] = targets
    flipped[chosen] = True
    return noisy, flipped


def apply_noise(
    dataset: AuditDataset,
    kind: str,
    rate: float,
    seed: int,
    probs: np.ndarray | None = None,
    *,
    pair_map: dict[int, int] | None = None,
) -> AuditDataset:
    """Return a copy of `dataset` with noisy `y`; the clean labels go to `true_labels`.

    `is_mislabeled` marks the flipped samples, together with any sample already known to be
    mislabeled: when the dataset already has `true_labels` (noise applied twice) they stay the
    ground truth and flags are recomputed against them; otherwise existing flags are kept.
    The test split is left untouched.
    """
    noisy, flipped = inject_noise(
        dataset.y, kind, rate, dataset.num_classes, seed=seed, probs=probs, pair_map=pair_map
    )
    if dataset.true_labels is not None:
        truth = dataset.true_labels.copy()
        flags = noisy != truth
    else:
        truth = dataset.y.astype(np.int64, copy=True)
        flags = flipped if dataset.is_mislabeled is None else flipped | dataset.is_mislabeled
    meta = {**dataset.meta, "noise": kind, "rate": float(rate), "seed": int(seed)}
    return replace(dataset, y=noisy, true_labels=truth, is_mislabeled=flags, meta=meta)


def stratified_choice(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Pick `size` distinct indices, each class represented in proportion to its count.

    Class quotas use the largest-remainder method, so they sum to exactly `size`.
    Returns the indices sorted ascending.
    """
    classes, counts = np.unique(labels, return_counts=True)
    quotas = _proportional_quotas(counts, size)
    picks = [
        rng.choice(np.flatnonzero(labels == cls), size=quota, replace=False)
        for cls, quota in zip(classes, quotas, strict=True)
        if quota > 0
    ]
    return np.sort(np.concatenate(picks)) if picks else np.empty(0, dtype=np.int64)


def _proportional_quotas(counts: np.ndarray, size: int) -> np.ndarray:
    exact = counts * size / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    remainder = size - int(quotas.sum())
    order = np.argsort(-(exact - quotas), kind="stable")
    quotas[order[:remainder]] += 1
    return quotas


def _flip_uniform(labels, count, num_classes, rng):
    chosen = rng.choice(len(labels), size=count, replace=False)
    targets = (labels[chosen] + rng.integers(1, num_classes, size=count)) % num_classes
    return chosen, targets


def _flip_asymmetric(labels, count, num_classes, rng, pair_map=None):
    mapping = _checked_pair_map(pair_map, num_classes)
    eligible = np.flatnonzero(np.isin(labels, list(mapping)))
    if count > len(eligible):
        raise ConfigError(
            f"asymmetric noise at this rate needs {count} samples in the mapped classes "
            f"{sorted(mapping)}, but only {len(eligible)} exist"
        )
    chosen = eligible[stratified_choice(labels[eligible], count, rng)]
    lookup = np.arange(num_classes)
    lookup[list(mapping)] = list(mapping.values())
    return chosen, lookup[labels[chosen]]


def _flip_adjacent(labels, count, num_classes, rng):
    chosen = rng.choice(len(labels), size=count, replace=False)
    targets = labels[chosen] + rng.choice(np.array([-1, 1]), size=count)
    targets[targets < 0] = 1
    targets[targets >= num_classes] = num_classes - 2
    return chosen, targets


def _flip_instance(labels, count, num_classes, rng, probs=None):
    if probs is None:
        probs = _synthetic_probs(labels, num_classes, rng)
    probs = _checked_probs(probs, len(labels), num_classes)
    rows = np.arange(len(labels))
    other = probs.copy()
    other[rows, labels] = -np.inf
    targets = other.argmax(axis=1)
    odds = np.maximum(other.max(axis=1), 1e-12) / np.maximum(probs[rows, labels], 1e-12)
    keys = rng.exponential(size=len(labels)) / odds
    chosen = np.argsort(keys, kind="stable")[:count]
    return chosen, targets[chosen]


def _synthetic_probs(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    size = len(labels)
    rows = np.arange(size)
    profiles = rng.dirichlet(np.ones(num_classes), size=num_classes)
    concentration = 10 * profiles[labels] + 0.1
    concentration[rows, labels] = 0.0
    spread = rng.gamma(concentration)
    spread /= spread.sum(axis=1, keepdims=True)
    confusion = rng.beta(2, 5, size=size)
    probs = confusion[:, None] * spread
    probs[rows, labels] = 1 - confusion
    return probs


_FLIPPERS: dict[str, Flipper] = {
    "uniform": _flip_uniform,
    "asymmetric": _flip_asymmetric,
    "adjacent": _flip_adjacent,
    "instance": _flip_instance,
}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ConfigError(f"unknown noise kind {kind!r}; choose one of {', '.join(KINDS)}")


def _parse_rate(text: str, spec: str) -> float:
    percent = text.endswith("%")
    try:
        value = float(text[:-1] if percent else text)
    except ValueError:
        raise ConfigError(f"noise rate {text!r} in {spec!r} is not a number") from None
    return value / 100 if percent else value


def _check_rate(rate: float) -> None:
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.floating, np.integer)):
        raise ConfigError(f"noise rate must be a number, got {rate!r}")
    if not 0 <= rate <= MAX_RATE:
        raise ConfigError(f"noise rate {rate} is outside [0, {MAX_RATE}]")


def _check_seed(seed: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"noise seed must be an integer, got {seed!r}")


def _checked_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ConfigError(f"num_classes must be an integer, got {num_classes!r}")
    if num_classes < 2:
        raise ConfigError(f"label noise needs at least 2 classes, got {num_classes}")
    array = np.asarray(labels)
    if array.ndim != 1 or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
        raise ConfigError(f"labels must be a 1-D integer array, got shape {array.shape} {array.dtype}")
    if array.size and (array.min() < 0 or array.max() >= num_classes):
        raise ConfigError(f"labels must lie in [0, {num_classes - 1}]")
    return array.astype(np.int64)


def _checked_pair_map(pair_map: dict[int, int] | None, num_classes: int) -> dict[int, int]:
    if pair_map is None:
        return {c: (c + 1) % num_classes for c in range(num_classes)}
    if not pair_map:
        raise ConfigError("pair_map is empty")
    mapping = {}
    for source, target in pair_map.items():
        if not (0 <= int(source) < num_classes and 0 <= int(target) < num_classes):
            raise ConfigError(f"pair_map entry {source} -> {target} is outside [0, {num_classes - 1}]")
        if int(source) == int(target):
            raise ConfigError(f"pair_map maps class {source} to itself")
        mapping[int(source)] = int(target)
    return mapping


def _checked_probs(probs: np.ndarray, size: int, num_classes: int) -> np.ndarray:
    array = np.asarray(probs, dtype=np.float64)
    if array.shape != (size, num_classes):
        raise ConfigError(f"probs must have shape ({size}, {num_classes}), got {array.shape}")
    if not np.isfinite(array).all() or (array < 0).any():
        raise ConfigError("probs must be finite and non-negative")
    return array
