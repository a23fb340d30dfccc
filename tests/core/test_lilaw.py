"""LiLAW's equations, gradient signs (paper Appendix A.2) and meta step."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from core.dataset import AuditDataset
from core.engine import Trainer, TrainConfig
from core.lilaw import LilawConfig, LilawParameters, lilaw_weights, per_sample_loss

# (s_y, s_max) -> (W_α, W_β, W_δ) at α, β, δ = 10, 2, 6, computed by hand from equations (2)-(4).
# Not the paper's Table 5: its values do not follow from its own equations.
HAND_COMPUTED = [
    ((0.95, 0.95), (0.9998064923528988, 0.27888482197713693, 1.2607105177048567e-05)),
    ((0.60, 0.60), (0.9955037268390589, 0.35434369377420455, 0.011108996538242316)),
    ((0.40, 0.60), (0.9677045353015494, 0.45016600268752216, 0.19789869908361457)),
    ((0.05, 0.95), (0.389360766050778, 0.7005671424739729, 0.809571648667887)),
]


@pytest.mark.parametrize(("probs", "expected"), HAND_COMPUTED)
def test_weights_match_hand_computed_values(probs, expected):
    p_label, p_max = (torch.tensor([v], dtype=torch.float64) for v in probs)
    weights = lilaw_weights(p_label, p_max, *(torch.tensor(v, dtype=torch.float64) for v in (10.0, 2.0, 6.0)))
    for got, want in zip(weights, expected):
        assert got.item() == pytest.approx(want, rel=1e-9)


def test_weights_stay_in_the_papers_bounds():
    p_max = torch.rand(10_000, dtype=torch.float64) * 0.9 + 0.1
    p_label = p_max * torch.rand(10_000, dtype=torch.float64)
    alpha, beta, delta = (torch.tensor(v, dtype=torch.float64) for v in (10.0, 2.0, 6.0))
    w_alpha, w_beta, w_delta = lilaw_weights(p_label, p_max, alpha, beta, delta)
    assert (w_alpha >= 1 / (1 + math.e) - 1e-12).all() and (w_alpha < 1 / (1 + math.exp(-(10 - 1)))).all()  # eq. (9)
    assert (w_beta <= 1 / (1 + math.exp(-1)) + 1e-12).all()  # eq. (12)
    assert ((w_delta > 0) & (w_delta <= 1)).all()  # eq. (13)


simplex_point = st.tuples(
    st.floats(0.05, 1.0), st.floats(0.0, 1.0), st.floats(0.01, 20), st.floats(0.01, 20), st.floats(0.01, 20), st.floats(0.01, 5)
)


@settings(max_examples=300, deadline=None)
@given(simplex_point)
def test_meta_gradient_signs_and_closed_forms_of_appendix_a2(point):
    p_max, fraction, alpha, beta, delta, loss = point
    p_label = p_max * fraction  # s_y <= s_max
    params = LilawParameters(LilawConfig())
    params.values = torch.tensor([alpha, beta, delta], dtype=torch.float64)
    grad = params.meta_gradient(*(torch.tensor([v], dtype=torch.float64) for v in (p_label, p_max, loss)))
    g_alpha, g_beta, g_delta = grad.tolist()

    assert g_alpha >= 0  # α only ever decreases
    assert g_beta <= 0  # β only ever increases
    z_delta = delta * p_label - p_max
    # g_delta is proportional to p_label: for a subnormal p_label it underflows to 0 in float64
    assert g_delta <= 0 if z_delta >= 0 else g_delta > 0 or p_label < 1e-300

    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    w_alpha, w_beta = sig(alpha * p_label - p_max), sig(-(beta * p_label - p_max))
    w_delta = math.exp(-(z_delta**2) / 2)
    assert g_alpha == pytest.approx(loss * w_alpha * (1 - w_alpha) * p_label, rel=1e-6, abs=1e-12)
    assert g_beta == pytest.approx(-loss * w_beta * (1 - w_beta) * p_label, rel=1e-6, abs=1e-12)
    assert g_delta == pytest.approx(-loss * w_delta * z_delta * p_label, rel=1e-6, abs=1e-12)


def test_meta_step_is_plain_gradient_descent_with_weight_decay():
    config = LilawConfig(lr=0.5, weight_decay=0.1)
    params = LilawParameters(config)
    p_label, p_max, loss = torch.tensor([0.2, 0.7]), torch.tensor([0.6, 0.7]), torch.tensor([1.5, 0.3])
    before = params.values.clone()
    grad = params.meta_gradient(p_label, p_max, loss)
    params.meta_step(p_label, p_max, loss)
    assert torch.allclose(params.values, before - 0.5 * (grad + 0.1 * before))


def test_clamp_is_off_by_default_and_projects_when_on():
    p_label, p_max, loss = torch.tensor([0.01]), torch.tensor([0.99]), torch.tensor([50.0])
    free = LilawParameters(LilawConfig(alpha=1.0, beta=5.0, delta=3.0, lr=1.0))
    free.meta_step(p_label, p_max, loss)
    assert free.alpha < 1.0 and free.beta > free.delta  # Algorithm 1 as written: nothing enforced
    clamped = LilawParameters(LilawConfig(alpha=1.0, beta=5.0, delta=3.0, lr=1.0, clamp=True))
    clamped.meta_step(p_label, p_max, loss)
    assert clamped.alpha >= 1.0 and clamped.beta <= clamped.delta <= clamped.alpha


def test_focal_loss_down_weights_easy_samples():
    logits = torch.tensor([[4.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([0, 0])
    ce, focal = per_sample_loss(logits, labels, "ce"), per_sample_loss(logits, labels, "focal", focal_gamma=2.0)
    p = torch.softmax(logits, 1)[:, 0]
    assert torch.allclose(focal, (1 - p) ** 2 * ce)
    assert focal[0] / ce[0] < focal[1] / ce[1]


def _tiny_dataset(n=120, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, 8)).astype(np.float32) + y[:, None]
    return AuditDataset("toy", "tabular", x, y, [str(c) for c in range(classes)], [str(i) for i in range(n)])


def test_meta_step_changes_only_alpha_beta_delta_and_never_touches_the_network():
    trainer = Trainer(_tiny_dataset(), TrainConfig(epochs=1, batch_size=32, lr=1e-2, lilaw=LilawConfig(lr=0.5)))
    trainer.train_step(trainer.train_index[:32], weighted=True)  # gives Adam some state
    network = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    adam = {k: v.clone() for k, v in trainer.optimizer.state_dict()["state"][0].items() if torch.is_tensor(v)}
    trainer.optimizer.zero_grad(set_to_none=True)
    before = trainer.params.values.clone()

    trainer.meta_step()

    assert not torch.equal(trainer.params.values, before)
    assert all(torch.equal(v, network[k]) for k, v in trainer.model.state_dict().items())
    assert all(p.grad is None for p in trainer.model.parameters())  # no backward through the network
    after = trainer.optimizer.state_dict()["state"][0]
    assert all(torch.equal(after[k], v) for k, v in adam.items())
    assert trainer.model.training
