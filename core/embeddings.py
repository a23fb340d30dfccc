"""Embeddings mode: a frozen timm backbone turns every image into a feature vector once, and the
audit trains a small head (linear or MLP) on those vectors with LiLAW, recording every dynamics
score as usual. For large images this replaces epochs of backbone training by one forward pass.

The images are read a batch at a time (a version's shards with explicit reads, `RowReader`, so
that neither the images nor their features are ever all in memory), their features written batch
by batch into a ``.npy`` file, and cached: the file's name is a hash of the images' bytes, read a
chunk at a time (so a relabelled version, whose images are the same, reuses it), the backbone's
name, the sha256 of the weights file and the input size. A second audit of the same images reads
the file back. The features are given memory-mapped (the engine streams them when they are large).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.audit_config import AuditConfig
from core.dataset import AuditDataset
from core.errors import ConfigError, DatasetError
from core.models import load_weights
from core.sample_store import RowReader, SegmentedRows, ShardSink
from core.settings import Settings

logger = logging.getLogger(__name__)

HEADS = {"linear": "linear", "mlp": "mlp"}  # AuditConfig.embeddings_head (EMBEDDING_HEADS) -> its core.models model
CACHE_VERSION = 1  # bump when the preprocessing changes, so that old caches are not reused
HASH_CHUNK_BYTES = 4 * 1024**2  # images hashed at a time

OnBatch = Callable[[int, int], None]  # (images embedded so far, total)
Images = np.ndarray | np.memmap | SegmentedRows  # uint8 [N, C, H, W]: in memory or a version's shards


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
    float32 [N, D] (the cached file, memory-mapped), modality "tabular"; `meta["embeddings"]` says
    how and whether the cache held them. The images may be a version's shards (`Images`): they are
    read a batch at a time."""
    if dataset.modality != "image":
        raise DatasetError(f"embeddings mode needs images; {dataset.name} holds {dataset.modality} data")
    weights_sha256 = file_sha256(backbone.weights_path)
    model: nn.Module | None = None

    def features_of(x: Images) -> tuple[np.ndarray, bool, float]:
        nonlocal model
        path = Path(cache_dir) / f"{cache_key(x, backbone, weights_sha256)}.npy"
        if path.is_file():
            return np.load(path, mmap_mode="r"), True, 0.0
        started = time.perf_counter()
        model = model or load_backbone(backbone, in_chans=3)
        compute_features(model, x, backbone, path, on_batch)
        return np.load(path, mmap_mode="r"), False, time.perf_counter() - started

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


def compute_features(model: nn.Module, x: Images, backbone: Backbone, path: Path, on_batch: OnBatch | None) -> None:
    """Write the features of uint8 images [N, C, H, W] to `path` (.npy), batch by batch (read with
    `batches`); the file appears only once complete."""
    device = next(model.parameters()).device
    mean, std = _normalisation(model, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".partial-{os.getpid()}.npy")
    sink: ShardSink | None = None  # written with explicit writes: a filled memory map would stay in memory
    try:
        with torch.inference_mode():
            for start, images in batches(x, backbone.batch_size):
                batch = torch.from_numpy(images).to(device)
                features = model((_as_rgb(batch, backbone.image_size) - mean) / std).flatten(1).float().cpu().numpy()
                if not np.isfinite(features).all():
                    raise ConfigError(f"the backbone {backbone.name!r} produced NaN or infinite features")
                if sink is None:
                    sink = ShardSink(partial, (len(x), features.shape[1]), np.dtype(np.float32))
                for offset, row in enumerate(features):
                    sink.put(start + offset, row)
                if on_batch:
                    on_batch(start + len(features), len(x))
        if sink is None:
            raise DatasetError("there are no images to embed")
        sink.finish()
        sink = None
        os.replace(partial, path)
    finally:
        if sink is not None:
            sink.discard()
        partial.unlink(missing_ok=True)


def batches(x: Images, rows: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows [first, first + `rows`) as one in-memory array) through `x`: a version's
    shards read with explicit reads, so that going through them maps none of them into memory."""
    reader = RowReader(x) if isinstance(x, (np.memmap, SegmentedRows)) else None
    try:
        for start in range(0, len(x), rows):
            stop = start + rows
            yield start, np.ascontiguousarray(x[start:stop] if reader is None else reader.read_range(start, stop))
    finally:
        if reader is not None:
            reader.close()


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


def cache_key(x: Images, backbone: Backbone, weights_sha256: str) -> str:
    """Which images went through which backbone at which size: the name of their features' file.
    The images' bytes are hashed a chunk of rows at a time (the digest of all of them, whatever
    the chunks: the same key for the same images, in memory or in shards)."""
    shape = [int(n) for n in x.shape]
    digest = hashlib.sha256()
    identity = [CACHE_VERSION, backbone.name, weights_sha256, backbone.image_size, shape, str(x.dtype)]
    digest.update(json.dumps(identity).encode())
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * np.dtype(x.dtype).itemsize
    for _, rows in batches(x, max(1, HASH_CHUNK_BYTES // max(1, row_bytes))):
        digest.update(rows.reshape(-1).view(np.uint8))
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
