"""Training augmentation for image batches (TrainConfig.augment): a random view of each image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4  # pixels of reflection padding before the random crop


def augment_images(xb: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random crop of the `PAD`-padded image (the same size as the input) and, with probability
    ½, a horizontal flip, drawn per image from `generator` (CPU), so a seeded run is reproducible.
    `xb`: float [B, C, H, W], already normalised."""
    batch, _, height, width = xb.shape
    pad = min(PAD, height - 1, width - 1)
    if pad <= 0:
        return xb
    padded = F.pad(xb, (pad, pad, pad, pad), mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(xb.device)
    dx = torch.randint(0, 2 * pad + 1, (batch,), generator=generator).to(xb.device)
    flip = (torch.rand(batch, generator=generator) < 0.5).to(xb.device)
    rows = (dy[:, None] + torch.arange(height, device=xb.device)[None, :])  # [B, H]
    cols = (dx[:, None] + torch.arange(width, device=xb.device)[None, :])  # [B, W]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    index_rows = rows[:, None, :, None].expand(batch, xb.shape[1], height, padded.shape[-1])
    out = padded.gather(2, index_rows)
    index_cols = cols[:, None, None, :].expand(batch, xb.shape[1], height, width)
    return out.gather(3, index_cols)
