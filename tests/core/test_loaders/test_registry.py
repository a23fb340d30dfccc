"""core.loaders.registry: built-in names, missing files, and formats told by suffix or content."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import DatasetError
from core.loaders import load_dataset


def test_unknown_builtin_and_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="unknown built-in"):
        load_dataset("cifar-11")
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.csv")


def test_format_sniffed_without_suffix(tmp_path, folder_zip):
    blob = tmp_path / "blob"
    blob.write_bytes(folder_zip(tmp_path / "pets.zip").read_bytes())
    assert load_dataset(blob).class_names == ["cat", "dog"]
    np.savez(tmp_path / "arrays.npz", x=np.zeros((4, 3)), y=np.array([0, 1, 0, 1]))
    blob.write_bytes((tmp_path / "arrays.npz").read_bytes())
    assert load_dataset(blob).modality == "tabular"


def test_unknown_suffix(tmp_path):
    (tmp_path / "data.xlsx").write_bytes(b"\x00\x01 spreadsheet")
    with pytest.raises(DatasetError, match="unrecognised format"):
        load_dataset(tmp_path / "data.xlsx")
