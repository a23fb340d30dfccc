"""core.loaders.builtin_datasets: the bundled digits, the installed Fashion-MNIST and Fashion-MNIST
idx files built in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core.errors import DatasetError
from core.loaders import load_dataset

FASHION_DIR = Path(os.environ.get("LILAW_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))


def test_digits_builtin():
    data = load_dataset("digits")
    assert data.modality == "image"
    assert data.x.shape == (1797, 1, 8, 8) and data.x.dtype == np.uint8
    assert data.x.max() == 255 and data.x.min() == 0
    assert data.class_names == [str(c) for c in range(10)]
    assert data.y.dtype == np.int64 and set(data.y) == set(range(10))
    assert data.sample_ids[:2] == ["digits-0", "digits-1"] and len(set(data.sample_ids)) == 1797


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Fashion-MNIST is not installed")
def test_fashion_mnist_builtin_stratified_limit():
    data = load_dataset("fashion-mnist", limit=1000)
    assert data.x.shape == (1000, 1, 28, 28) and data.x.dtype == np.uint8
    assert np.bincount(data.y, minlength=10).tolist() == [100] * 10
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert data.test is not None and data.test.x.shape == (10000, 1, 28, 28)
    assert np.bincount(data.test.y).tolist() == [1000] * 10
    assert data.sample_ids == load_dataset(f"fashion-mnist:{FASHION_DIR}", limit=1000).sample_ids


def test_fashion_mnist_from_idx_dir(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.arange(4 * 9, dtype=np.uint8).reshape(4, 3, 3))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1, 2, 1], dtype=np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 3, 3), dtype=np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.array([3, 4], dtype=np.uint8))
    data = load_dataset(f"fashion-mnist:{tmp_path}")
    assert data.x.shape == (4, 1, 3, 3) and data.x[1, 0, 0, 0] == 9
    assert data.y.tolist() == [0, 1, 2, 1] and data.test.y.tolist() == [3, 4]


def test_fashion_mnist_bad_idx(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 3, 3), dtype=np.uint8))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09\x01")
    with pytest.raises(DatasetError, match="data bytes do not match"):
        load_dataset(f"fashion-mnist:{tmp_path}")
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"garbage!")
    with pytest.raises(DatasetError, match="bad magic"):
        load_dataset(f"fashion-mnist:{tmp_path}")
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(f"fashion-mnist:{tmp_path / 'missing'}")


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.tobytes())
