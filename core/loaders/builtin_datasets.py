"""The built-in datasets: scikit-learn's 8x8 digits (shipped in its wheel) and Fashion-MNIST
read from its idx files."""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from core.dataset import AuditDataset
from core.errors import DatasetError
from core.loaders.images import resize_array

FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "LILAW_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_digits(image_size: int | None) -> AuditDataset:
    """uint8 [1797, 1, 8, 8], scaled from 0..16 to 0..255; ids ``digits-<index>``."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = np.round(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    return AuditDataset(
        name="digits",
        modality="image",
        x=resize_array(x, image_size),
        y=bunch.target.astype(np.int64),
        class_names=[str(c) for c in range(10)],
        sample_ids=[f"digits-{i}" for i in range(len(x))],
        meta={"source": "digits", "format": "builtin"},
    )


def load_fashion_mnist(image_size: int | None, directory: str | None = None) -> AuditDataset:
    """The train split, with t10k as its ``test``, from `directory`, else $LILAW_FASHION_MNIST_DIR,
    else /usr/share/datasets/fashion-mnist."""
    root = Path(directory or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT_DIR)
    if not root.is_dir():
        raise DatasetError(
            f"Fashion-MNIST directory {root} not found; install the dataset-fashion-mnist package, "
            f"set {FASHION_MNIST_ENV} or pass fashion-mnist:/path/to/dir"
        )
    train = _fashion_mnist_split(root, "train", "train", image_size)
    train.test = _fashion_mnist_split(root, "t10k", "test", image_size)
    return train


def _fashion_mnist_split(root: Path, prefix: str, split: str, image_size: int | None) -> AuditDataset:
    images = _read_idx(_idx_path(root, f"{prefix}-images-idx3-ubyte"), ndim=3)
    labels = _read_idx(_idx_path(root, f"{prefix}-labels-idx1-ubyte"), ndim=1)
    if images.dtype != np.uint8 or len(images) != len(labels):
        raise DatasetError(f"{root}: {prefix} images ({len(images)}) and labels ({len(labels)}) do not match")
    if labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DatasetError(f"{root}: {prefix} labels fall outside 0..9")
    return AuditDataset(
        name="fashion-mnist" if split == "train" else "fashion-mnist-test",
        modality="image",
        x=resize_array(images[:, None], image_size),
        y=labels.astype(np.int64),
        class_names=list(FASHION_MNIST_CLASSES),
        sample_ids=[f"fashion-mnist-{split}-{i}" for i in range(len(labels))],
        meta={"source": str(root), "format": "builtin", "split": split},
    )


def _idx_path(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{root}: {stem}[.gz] not found")


def _read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Parse an idx file (gzipped or not): 2 zero bytes, a dtype code, ndim, big-endian dims."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path.name} is a corrupt gzip file: {exc}") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_DTYPES:
        raise DatasetError(f"{path.name} is not an idx file (bad magic number)")
    if raw[3] != ndim:
        raise DatasetError(f"{path.name} has {raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path.name} is truncated in its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    if len(raw) - header != math.prod(shape) * dtype.itemsize:
        raise DatasetError(f"{path.name}: {len(raw) - header} data bytes do not match shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))
