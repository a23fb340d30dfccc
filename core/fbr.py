"""Feature-Based Reweighting (FBR, arXiv 2510.12209), as the authors' code implements it.

Given a small trusted ("clean") subset S, each training sample is weighted by how well its
penultimate features agree with the trusted samples of its given label:

    μ        = class-balanced mean of the clean features (mean over the classes in S of each
               class's mean feature)
    f_i      = φ(x_i) − μ (batch),  g_j = φ_j − μ (clean)
    K_ij     = ⟨f_i, g_j⟩
    M_ic     = mean of K_ij over the clean samples j of class c
    M̃_ic     = M_ic − (second-largest M_ic of row i)
    d_i      = Σ_c σ_ic M̃_ic,  σ_ic = +1 for c = ỹ_i, −α0 otherwise      (the agreement)
    w_i      = clip(½ + η d_i, 0, 1),  η = max over the batch's negative d_j of ½/|d_j|;
               w_i ≤ ½ → 0; every w_i = 1 when no d_j is negative

Pure torch, no engine: the trainer hands in features it computed (eval mode, no gradient).

Classes without trusted samples: they have no M_ic, so they are left out of the row's
second-largest value and of the sum over c (as if the class did not exist). A sample whose
*given* label has no trusted samples has nothing to agree with: its agreement is NaN and its
weight 1 (it is trained as without FBR, the same weight FBR gives when it sees no evidence
against any sample), and it does not take part in η. At least two classes must have trusted
samples (the second-largest value of a row is undefined otherwise): fewer raise ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FbrBatch:
    """One mini-batch's FBR quantities, all float32 [B] but `similarity` [B, C]."""

    similarity: torch.Tensor  # M_ic, NaN for classes without trusted samples
    agreement: torch.Tensor  # d_i, NaN where the given label has no trusted samples
    weight: torch.Tensor  # w_i in {0} ∪ (½, 1]


def default_alpha0(num_classes: int) -> float:
    """The authors' α0 = 1/(C − 1)."""
    if num_classes < 2:
        raise ValueError(f"FBR needs at least 2 classes, got {num_classes}")
    return 1.0 / (num_classes - 1)


def _check(features: torch.Tensor, labels: torch.Tensor, num_classes: int, name: str) -> None:
    if features.ndim != 2:
        raise ValueError(f"{name} features must be 2-D [samples, dims], got shape {tuple(features.shape)}")
    if labels.ndim != 1 or len(labels) != len(features):
        raise ValueError(f"{name} labels must be 1-D with one label per feature row, got shape {tuple(labels.shape)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{name} labels must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}")


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean of `features` [C, D] and which classes have any sample (bool [C]); rows of
    absent classes are 0."""
    features = features.float()
    sums = torch.zeros(num_classes, features.shape[1], dtype=torch.float32, device=features.device)
    sums.index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).to(features.device)
    present = counts > 0
    return sums / counts.clamp_min(1)[:, None].float(), present


def class_balanced_mean(clean_features: torch.Tensor, clean_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """μ: the mean over the classes present in the clean set of each class's mean feature [D]."""
    _check(clean_features, clean_labels, num_classes, "clean")
    means, present = class_means(clean_features, clean_labels, num_classes)
    if not present.any():
        raise ValueError("the clean set is empty")
    return means[present].mean(0)


def class_similarity(
    batch_features: torch.Tensor, clean_features: torch.Tensor, clean_labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """M [B, C]: mean over the clean samples of class c of ⟨φ(x_i) − μ, φ_j − μ⟩; NaN columns for
    classes without clean samples. (The mean of inner products is the inner product with the
    class's mean centred feature, which is how it is computed: O(B·C·D), not O(B·|S|·D).)"""
    _check(clean_features, clean_labels, num_classes, "clean")
    if batch_features.ndim != 2 or batch_features.shape[1] != clean_features.shape[1]:
        raise ValueError(
            f"batch features {tuple(batch_features.shape)} do not match the clean features' width {clean_features.shape[1]}"
        )
    mu = class_balanced_mean(clean_features, clean_labels, num_classes)
    means, present = class_means(clean_features.float() - mu, clean_labels, num_classes)
    similarity = (batch_features.float() - mu) @ means.T
    return similarity.masked_fill(~present, float("nan"))


def agreement(similarity: torch.Tensor, labels: torch.Tensor, alpha0: float) -> torch.Tensor:
    """d [B] from M [B, C] (NaN = class without clean samples) and the given labels."""
    present = ~torch.isnan(similarity[0]) if len(similarity) else torch.ones(similarity.shape[1], dtype=torch.bool)
    if int(present.sum()) < 2:
        raise ValueError(
            f"FBR needs trusted samples of at least 2 classes, the clean set has {int(present.sum())}"
        )
    second = similarity.masked_fill(~present, float("-inf")).topk(2, dim=1).values[:, 1]
    shifted = (similarity - second[:, None]).masked_fill(~present, 0.0)
    sigma = torch.full_like(shifted, -float(alpha0))
    sigma.scatter_(1, labels[:, None], 1.0)
    d = (sigma * shifted).sum(1)
    return d.masked_fill(~present[labels], float("nan"))


def weights_from_agreement(d: torch.Tensor) -> torch.Tensor:
    """w [B]: clip(½ + η d, 0, 1) with η = max_{d_j < 0} ½/|d_j|, then w ≤ ½ → 0; all 1 when no
    d_j is negative. NaN agreements weigh 1 and do not count for η."""
    negative = d < 0  # False for NaN
    if not negative.any():
        return torch.ones_like(d)
    eta = 0.5 / d[negative].abs().min()  # the largest ½/|d_j|
    w = (0.5 + eta * d).clamp(0.0, 1.0)
    w = torch.where(w <= 0.5, torch.zeros_like(w), w)
    return torch.where(torch.isnan(d), torch.ones_like(w), w)


@torch.no_grad()
def fbr_batch(
    batch_features: torch.Tensor,
    batch_labels: torch.Tensor,
    clean_features: torch.Tensor,
    clean_labels: torch.Tensor,
    num_classes: int,
    alpha0: float,
) -> FbrBatch:
    """M, d and w of one mini-batch (no gradient: the weights enter the loss detached)."""
    _check(batch_features, batch_labels, num_classes, "batch")
    similarity = class_similarity(batch_features, clean_features, clean_labels, num_classes)
    d = agreement(similarity, batch_labels, alpha0)
    return FbrBatch(similarity=similarity, agreement=d, weight=weights_from_agreement(d))
