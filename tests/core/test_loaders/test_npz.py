"""core.loaders.npz on real .npz files built in tmp_path."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import DatasetError
from core.loaders import load_dataset


def test_npz_tabular_with_flags(tmp_path):
    path = tmp_path / "tab.npz"
    np.savez(path, x=np.arange(12, dtype=np.float64).reshape(4, 3), y=np.array([2, 10, 2, 10]), flags=[0, 1, 0, 0])
    data = load_dataset(path)
    assert data.modality == "tabular" and data.x.dtype == np.float32 and data.x.shape == (4, 3)
    assert data.class_names == ["2", "10"] and data.y.tolist() == [0, 1, 0, 1]
    assert data.sample_ids == ["0", "1", "2", "3"]
    assert data.is_mislabeled.tolist() == [False, True, False, False]


def test_npz_images_timeseries_and_string_labels(tmp_path):
    labels = np.array(["b", "a", "b"])
    np.savez(tmp_path / "gray.npz", x=np.zeros((3, 5, 5), dtype=np.uint8), y=labels)
    gray = load_dataset(tmp_path / "gray.npz")
    assert gray.modality == "image" and gray.x.shape == (3, 1, 5, 5)
    assert gray.class_names == ["a", "b"] and gray.y.tolist() == [1, 0, 1]
    np.savez(tmp_path / "hwc.npz", x=np.zeros((3, 5, 6, 3), dtype=np.int64), y=labels)
    assert load_dataset(tmp_path / "hwc.npz").x.shape == (3, 3, 5, 6)
    assert load_dataset(tmp_path / "hwc.npz", image_size=4).x.shape == (3, 3, 4, 4)
    np.savez(tmp_path / "ts.npz", x=np.zeros((3, 2, 7), dtype=np.float32), y=labels, is_mislabeled=[True, False, False])
    series = load_dataset(tmp_path / "ts.npz")
    assert series.modality == "timeseries" and series.x.shape == (3, 2, 7)
    assert series.is_mislabeled.tolist() == [True, False, False]
    np.savez(tmp_path / "flat.npz", x=np.zeros((3, 7)), y=labels)
    assert load_dataset(tmp_path / "flat.npz", modality="timeseries").x.shape == (3, 1, 7)


def test_npz_sample_ids(tmp_path):
    np.savez(tmp_path / "ids.npz", x=np.zeros((2, 2)), y=[0, 1], sample_ids=np.array(["u1", "u2"]))
    assert load_dataset(tmp_path / "ids.npz").sample_ids == ["u1", "u2"]
    np.savez(tmp_path / "dup.npz", x=np.zeros((2, 2)), y=[0, 1], sample_ids=np.array(["u1", "u1"]))
    with pytest.raises(DatasetError, match="occurs more than once"):
        load_dataset(tmp_path / "dup.npz")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((3, 2)), "y": np.array([0, 1])}, "one label per row"),
        ({"x": np.zeros((3, 2))}, "lacks array"),
        ({"x": np.zeros(3), "y": np.array([0, 1, 0])}, "expected numeric"),
        ({"x": np.zeros((3, 4, 4, 4)), "y": np.array([0, 1, 0])}, "expected numeric"),
        ({"x": np.zeros((3, 4, 5, 7), np.uint8), "y": np.array([0, 1, 0])}, "channel axis"),
        ({"x": np.full((3, 4, 4), 300), "y": np.array([0, 1, 0])}, "0..255"),
        ({"x": np.array([[0.0], [np.nan], [1.0]]), "y": np.array([0, 1, 0])}, "sample 1 has NaN"),
        ({"x": np.zeros((3, 2)), "y": np.array([1, 1, 1])}, "at least 2 classes"),
        ({"x": np.zeros((3, 2)), "y": np.array([0.0, np.nan, 1.0])}, "row 2 is missing"),
        ({"x": np.zeros((1, 2)), "y": np.array([0])}, "at least 2 are needed"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, 1, 0]), "flags": np.array([0, 2, 1])}, "0/1"),
        ({"x": np.zeros((3, 2)), "y": np.array([0, 1, 0]), "flags": np.array([0, 1])}, "2 is_mislabeled flags"),
        ({"x": np.array(["a", "b", "c"]).reshape(3, 1), "y": np.array([0, 1, 0])}, "expected numeric"),
    ],
)
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path / "bad.npz")


def test_npz_object_array_is_not_unpickled(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset(tmp_path / "obj.npz")
