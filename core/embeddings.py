"""Embeddings mode: a frozen timm backbone turns every image into a feature vector once, and the
audit trains a small head (linear or MLP) on those vectors with LiLAW, recording every dynamics
score as usual. For large images this replaces epochs of backbone training by one forward pass.

The features are computed in batches, written batch by batch into a ``.npy`` file (never all in
memory as floats of the images), and cached: the file's name is a hash of the images' bytes (so
a relabelled version, whose images are the same, reuses it), the backbone's name, the sha256 of
the weights file and the input size. A second audit of the same images reads the file back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.audit_config import AuditConfig
from core.dataset import AuditDataset
from core.errors import ConfigError, DatasetError
from core.models import load_weights
from core.settings import Settings

logger = logging.getLogger(__name__)

HEADS = {"linear": "linear", "mlp": "mlp"}  # AuditConfig.embeddings_head (EMBEDDING_HEADS) -> its core.models model
CACHE_VERSION = 1  # bump when the preprocessing changes, so that old caches are not reused
HASH_CHUNK_BYTES = 64 * 1024**2

OnBatch = Callable[[int, int], None]  # (images embedded so far, total)


@dataclass(frozen=True)
class Backbone:
    """What computes the features: a timm model name, its local weights file, the input side."""

    name: str
    weights_path: Path
    image_size: int | None = None  # None: the images' own size
    batch_size: int = 256
    device: str | None = None


def embed_dataset(
    dataset: AuditDataset, backbone: Backbone, cache_dir: Path, on_batch: OnBatch | None = None
) -> AuditDataset:
    """The dataset with its images (and its test split's) replaced by the backbone's features:
    float32 [N, D], modality "tabular"; `meta["embeddings"]` says how and whether the cache held them."""
    if dataset.modality != "image":
        raise DatasetError(f"embeddings mode needs images; {dataset.name} holds {dataset.modality} data")
    weights_sha256 = file_sha256(backbone.weights_path)
    model: nn.Module | None = None

    def features_of(x: np.ndarray) -> tuple[np.ndarray, bool, float]:
        nonlocal model
        path = Path(cache_dir) / f"{cache_key(x, backbone, weights_sha256)}.npy"
        if path.is_file():
            return np.load(path), True, 0.0
        started = time.perf_counter()
        model = model or load_backbone(backbone, in_chans=3)
        compute_features(model, x, backbone, path, on_batch)
        return np.load(path), False, time.perf_counter() - started

    features, cached, seconds = features_of(dataset.x)
    test = dataset.test
    if test is not None:
        test = replace(test, modality="tabular", x=features_of(test.x)[0])
    info = {
        "backbone": backbone.name, "weights_sha256": weights_sha256, "image_size": backbone.image_size,
        "dimensions": int(features.shape[1]), "cached": cached, "seconds": round(seconds, 3),
    }  # fmt: skip
    logger.info("embeddings of %s: %s", dataset.name, info)
    return replace(dataset, modality="tabular", x=features, test=test, meta={**dataset.meta, "embeddings": info})


def load_backbone(backbone: Backbone, in_chans: int) -> nn.Module:
    """The timm model without its classifier (its forward returns pooled features), with the
    weights of the local file (never downloaded), frozen, in eval mode."""
    import timm

    if not timm.is_model(backbone.name):
        raise ConfigError(f"unknown timm model {backbone.name!r} for embeddings")
    try:
        model = timm.create_model(backbone.name, pretrained=False, num_classes=0, in_chans=in_chans)
    except Exception as exc:  # timm raises many kinds of errors for unbuildable configurations
        raise ConfigError(f"could not build the embeddings backbone {backbone.name!r}: {exc}") from exc
    load_weights(model, backbone.weights_path)
    model.requires_grad_(False)
    return model.eval().to(_device(backbone.device))


def compute_features(model: nn.Module, x: np.ndarray, backbone: Backbone, path: Path, on_batch: OnBatch | None) -> None:
    """Write the features of uint8 images [N, C, H, W] to `path` (.npy), batch by batch; the file
    appears only once complete."""
    device = next(model.parameters()).device
    mean, std = _normalisation(model, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{os.getpid()}.npy")
    out = None
    try:
        with torch.inference_mode():
            for start in range(0, len(x), backbone.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(x[start : start + backbone.batch_size])).to(device)
                features = model((_as_rgb(batch, backbone.image_size) - mean) / std).flatten(1).float().cpu().numpy()
                if out is None:
                    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(x), features.shape[1]))
                out[start : start + len(features)] = features
                if on_batch:
                    on_batch(start + len(features), len(x))
        if out is None:
            raise DatasetError("there are no images to embed")
        if not np.isfinite(out).all():
            raise ConfigError(f"the backbone {backbone.name!r} produced NaN or infinite features")
        out.flush()
        del out
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _as_rgb(batch: torch.Tensor, image_size: int | None) -> torch.Tensor:
    """uint8 [B, C, H, W] as float [B, 3, S, S] in 0..1: grayscale repeated on three channels
    (what backbones trained on RGB expect), resized bilinearly to `image_size`."""
    images = batch.float() / 255.0
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if image_size and images.shape[-2:] != (image_size, image_size):
        images = nn.functional.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return images


def _normalisation(model: nn.Module, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The backbone's own input mean and std (timm's pretrained config; ImageNet's by default)."""
    config = getattr(model, "pretrained_cfg", None) or {}
    mean = config.get("mean", (0.485, 0.456, 0.406))
    std = config.get("std", (0.229, 0.224, 0.225))
    return (torch.tensor(mean, device=device).view(1, 3, 1, 1), torch.tensor(std, device=device).view(1, 3, 1, 1))


def cache_key(x: np.ndarray, backbone: Backbone, weights_sha256: str) -> str:
    """Which images went through which backbone at which size: the name of their features' file."""
    digest = hashlib.sha256()
    digest.update(json.dumps([CACHE_VERSION, backbone.name, weights_sha256, backbone.image_size, x.shape, str(x.dtype)]).encode())
    flat = np.ascontiguousarray(x).reshape(-1).view(np.uint8)
    for start in range(0, len(flat), HASH_CHUNK_BYTES):
        digest.update(flat[start : start + HASH_CHUNK_BYTES])
    return f"{backbone.name.replace('/', '_')}-{digest.hexdigest()[:32]}"


def file_sha256(path: str | Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"embeddings weights file not found: {path}")
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def embeddings_dir(data_dir: Path) -> Path:
    """Where a service (or the CLI) with this data dir caches features."""
    return Path(data_dir) / "artifacts" / "embeddings"


def for_embeddings(
    dataset: AuditDataset, config: AuditConfig, cache_dir: Path | None = None, on_batch: OnBatch | None = None
) -> tuple[AuditDataset, AuditConfig]:
    """What the engine trains on: unchanged without `config.embeddings_backbone`; else the
    backbone's features and a copy of the config that trains the head on them. Without
    `cache_dir`, the features go under the data dir of the environment's settings."""
    if not config.embeddings_backbone:
        return dataset, config
    if cache_dir is None:
        cache_dir = embeddings_dir(Settings().data_dir)
    backbone = Backbone(
        name=config.embeddings_backbone, weights_path=Path(config.embeddings_weights or ""),
        image_size=config.image_size, device=config.device,
    )  # fmt: skip
    head = replace(
        config, model=HEADS[config.embeddings_head], image_size=None, pretrained=False, weights_path=None,
        embeddings_backbone=None, embeddings_weights=None,
    )  # fmt: skip
    return embed_dataset(dataset, backbone, cache_dir, on_batch), head
