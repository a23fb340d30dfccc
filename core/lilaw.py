"""LiLAW: Lightweight Learnable Adaptive Weighting (paper §3, Algorithm 1).

For a sample with softmax s, given label y, s_y = s[y] and s_max = max(s):

    W_α = σ(α·s_y − s_max)            high for easy samples (correct and confident)
    W_β = σ(−(β·s_y − s_max))         high for hard samples (s_y ≪ s_max)
    W_δ = exp(−(δ·s_y − s_max)² / 2)  high for moderate samples (δ·s_y ≈ s_max)
    W   = W_α + W_β + W_δ,   L_W = W · ℓ(f(x), y)

After every training mini-batch, one manual gradient step on (α, β, δ) using a random batch of
the (possibly noisy) validation split: p ← p − lr·(∂L_W/∂p + wd·p). The network is frozen for
that step and its forward pass runs under no_grad, so the meta step costs one forward pass of a
validation batch and never backpropagates through the network.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.audit_config import LilawConfig
from core.errors import ConfigError


def lilaw_weights(
    p_label: torch.Tensor, p_max: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor, delta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Equations (2)–(4): the three per-sample weights W_α, W_β, W_δ."""
    w_alpha = torch.sigmoid(alpha * p_label - p_max)
    w_beta = torch.sigmoid(-(beta * p_label - p_max))
    w_delta = torch.exp(-((delta * p_label - p_max) ** 2) / 2)
    return w_alpha, w_beta, w_delta


def label_and_max_probability(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax of float32 logits, s_y and s_max."""
    probs = torch.softmax(logits.float(), dim=1)
    p_label = probs.gather(1, labels[:, None]).squeeze(1)
    return probs, p_label, probs.max(dim=1).values


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str = "ce", focal_gamma: float = 2.0) -> torch.Tensor:
    """Unreduced ℓ(f(x), y): cross-entropy, or focal loss (Lin et al., 2017)."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    if kind == "ce":
        return ce
    if kind == "focal":
        p_label = torch.exp(-ce)
        return (1 - p_label) ** focal_gamma * ce
    raise ConfigError(f"unknown loss {kind!r}: use 'ce' or 'focal'")


class LilawParameters:
    """The three learnable scalars and their manual meta step (Algorithm 1, lines 12–20)."""

    def __init__(self, config: LilawConfig, device: torch.device | str = "cpu"):
        self.config = config
        self.values = torch.tensor([config.alpha, config.beta, config.delta], dtype=torch.float32, device=device)

    @property
    def alpha(self) -> torch.Tensor:
        return self.values[0]

    @property
    def beta(self) -> torch.Tensor:
        return self.values[1]

    @property
    def delta(self) -> torch.Tensor:
        return self.values[2]

    def weights(self, p_label: torch.Tensor, p_max: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return lilaw_weights(p_label, p_max, self.alpha, self.beta, self.delta)

    def meta_gradient(self, p_label: torch.Tensor, p_max: torch.Tensor, loss: torch.Tensor) -> torch.Tensor:
        """∂L_W/∂(α, β, δ) of the batch-mean weighted loss, with the network's outputs held fixed."""
        params = self.values.detach().requires_grad_(True)
        with torch.enable_grad():
            w_alpha, w_beta, w_delta = lilaw_weights(p_label.detach(), p_max.detach(), params[0], params[1], params[2])
            weighted = ((w_alpha + w_beta + w_delta) * loss.detach()).mean()
            (grad,) = torch.autograd.grad(weighted, params)
        return grad

    @torch.no_grad()
    def meta_step(self, p_label: torch.Tensor, p_max: torch.Tensor, loss: torch.Tensor) -> None:
        grad = self.meta_gradient(p_label, p_max, loss)
        self.values -= self.config.lr * (grad + self.config.weight_decay * self.values)
        if self.config.clamp:
            self._project_to_ordering()

    def _project_to_ordering(self) -> None:
        alpha = self.values[0].clamp(min=1.0)
        delta = torch.minimum(self.values[2], alpha)
        beta = torch.minimum(self.values[1], delta)
        self.values.copy_(torch.stack([alpha, beta, delta]))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"values": self.values.detach().cpu().clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.values.copy_(state["values"].to(self.values.device))
