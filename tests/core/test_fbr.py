"""FBR (core.fbr) against a mini-batch worked out by hand.

2-D features, C = 3 classes, α0 = 1/(C−1) = ½.

Clean set S (features, label):
    (3, 1) 0    (5, 1) 0    (1, 4) 1    (−2, −2) 2
Class means: class 0 (4, 1), class 1 (1, 4), class 2 (−2, −2).
μ (class-balanced) = ((4 + 1 − 2)/3, (1 + 4 − 2)/3) = (1, 1)
    (the plain mean over the four samples would be (7/4, 1): the test tells them apart).
Centred clean g_j = φ_j − μ:  (2, 0) 0   (4, 0) 0   (0, 3) 1   (−3, −3) 2

Batch (features φ, given label ỹ), f_i = φ_i − μ, K_i = ⟨f_i, g_j⟩ over the 4 clean samples,
M_i = per-class mean of K_i, second = second-largest of M_i, M̃_i = M_i − second,
d_i = M̃_iỹ − ½ Σ_{c≠ỹ} M̃_ic:

  x0 (3, 1)   ỹ=0  f=(2, 0)     K=[4, 8, 0, −6]     M=[6, 0, −6]      second 0
                   M̃=[6, 0, −6]      d = 6 − ½(0 − 6)    = 9
  x1 (2, 3)   ỹ=2  f=(1, 2)     K=[2, 4, 6, −9]     M=[3, 6, −9]      second 3
                   M̃=[0, 3, −12]     d = −12 − ½(0 + 3)  = −13.5
  x2 (1.5, 1) ỹ=0  f=(0.5, 0)   K=[1, 2, 0, −1.5]   M=[1.5, 0, −1.5]  second 0
                   M̃=[1.5, 0, −1.5]  d = 1.5 − ½(0 − 1.5) = 2.25
  x3 (0, 2)   ỹ=0  f=(−1, 1)    K=[−2, −4, 3, 0]    M=[−3, 3, 0]      second 0
                   M̃=[−3, 3, 0]      d = −3 − ½(3 + 0)   = −4.5

η = max(½/13.5, ½/4.5) = 1/9.
w = clip(½ + d/9, 0, 1) = [clip(1.5)=1, clip(−1)=0, 0.75, 0]; then ≤ ½ → 0: [1, 0, 0.75, 0].
"""

from __future__ import annotations

import math

import pytest
import torch

from core.fbr import (
    agreement,
    class_balanced_mean,
    class_similarity,
    default_alpha0,
    fbr_batch,
    weights_from_agreement,
)

CLEAN_X = torch.tensor([[3.0, 1.0], [5.0, 1.0], [1.0, 4.0], [-2.0, -2.0]])
CLEAN_Y = torch.tensor([0, 0, 1, 2])
BATCH_X = torch.tensor([[3.0, 1.0], [2.0, 3.0], [1.5, 1.0], [0.0, 2.0]])
BATCH_Y = torch.tensor([0, 2, 0, 0])

MU = [1.0, 1.0]
M = [[6.0, 0.0, -6.0], [3.0, 6.0, -9.0], [1.5, 0.0, -1.5], [-3.0, 3.0, 0.0]]
D = [9.0, -13.5, 2.25, -4.5]
W = [1.0, 0.0, 0.75, 0.0]


def test_class_balanced_mean_is_the_mean_of_class_means():
    assert class_balanced_mean(CLEAN_X, CLEAN_Y, 3).tolist() == pytest.approx(MU)


def test_similarity_agreement_and_weights_match_the_hand_computation():
    assert default_alpha0(3) == 0.5
    assert class_similarity(BATCH_X, CLEAN_X, CLEAN_Y, 3).tolist() == [pytest.approx(row) for row in M]
    out = fbr_batch(BATCH_X, BATCH_Y, CLEAN_X, CLEAN_Y, num_classes=3, alpha0=0.5)
    assert out.similarity.tolist() == [pytest.approx(row) for row in M]
    assert out.agreement.tolist() == pytest.approx(D)
    assert out.weight.tolist() == pytest.approx(W)


def test_alpha0_zero_keeps_only_the_given_label_term():
    # d_i = M̃_iỹ: x0 6, x1 −12, x2 1.5, x3 −3 → η = ½/3, w = clip(½ + d/6) = [1, 0, 0.75, 0]
    d = agreement(torch.tensor(M), BATCH_Y, alpha0=0.0)
    assert d.tolist() == pytest.approx([6.0, -12.0, 1.5, -3.0])
    assert weights_from_agreement(d).tolist() == pytest.approx([1.0, 0.0, 0.75, 0.0])


def test_weights_all_one_without_a_negative_agreement_and_zero_at_d_zero():
    assert weights_from_agreement(torch.tensor([0.0, 2.0, 5.0])).tolist() == [1.0, 1.0, 1.0]
    # η = ½/2 = ¼: d = 0 → w = ½ → 0; d = 1 → ¾
    assert weights_from_agreement(torch.tensor([-2.0, 0.0, 1.0])).tolist() == pytest.approx([0.0, 0.0, 0.75])


def test_a_class_without_clean_samples_is_left_out_and_its_samples_weigh_one():
    # Clean: class 0 (3, 1), (5, 1); class 1 (1, 4); no class 2. μ = ((4 + 1)/2, (1 + 4)/2) = (2.5, 2.5).
    # Centred class means: class 0 (1.5, −1.5), class 1 (−1.5, 1.5).
    # Batch (3, 1) ỹ=0: f = (0.5, −1.5): M = [3, −3, NaN], second −3, M̃ = [6, 0], d = 6 − ½·0 = 6
    #       (1, 4) ỹ=0: f = (−1.5, 1.5): M = [−4.5, 4.5, NaN], second −4.5, M̃ = [0, 9], d = −4.5
    #       (1, 1) ỹ=2: no clean sample of class 2 → d NaN, w 1.
    # η = ½/4.5 = 1/9: w = [clip(½ + 6/9) = 1, 0, 1].
    out = fbr_batch(
        torch.tensor([[3.0, 1.0], [1.0, 4.0], [1.0, 1.0]]), torch.tensor([0, 0, 2]),
        CLEAN_X[:3], CLEAN_Y[:3], num_classes=3, alpha0=0.5,
    )
    assert math.isnan(out.similarity[0, 2])
    assert out.agreement[:2].tolist() == pytest.approx([6.0, -4.5])
    assert math.isnan(out.agreement[2])
    assert out.weight.tolist() == pytest.approx([1.0, 0.0, 1.0])


def test_a_single_class_clean_set_is_refused():
    with pytest.raises(ValueError, match="at least 2 classes"):
        fbr_batch(BATCH_X, BATCH_Y, CLEAN_X[:2], CLEAN_Y[:2], num_classes=3, alpha0=0.5)


def test_bad_shapes_and_labels_are_refused():
    with pytest.raises(ValueError, match="width"):
        class_similarity(torch.zeros(2, 3), CLEAN_X, CLEAN_Y, 3)
    with pytest.raises(ValueError, match="lie in"):
        fbr_batch(BATCH_X, torch.tensor([0, 3, 0, 0]), CLEAN_X, CLEAN_Y, 3, 0.5)
    with pytest.raises(ValueError, match="at least 2 classes"):
        default_alpha0(1)
