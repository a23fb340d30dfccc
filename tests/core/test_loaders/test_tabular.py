"""core.loaders.tabular on real CSV and Parquet files built in tmp_path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.errors import DatasetError
from core.loaders import load_dataset


def test_csv_tabular_with_ids_and_flags(tmp_path):
    frame = pd.DataFrame(
        {"sample_id": ["r1", "r2", "r3"], "f1": [0.5, 1.5, 2.5], "f2": [1, 2, 3],
         "label": ["yes", "no", "yes"], "is_mislabeled": [False, True, False]}
    )  # fmt: skip
    frame.to_csv(tmp_path / "rows.csv", index=False)
    data = load_dataset(tmp_path / "rows.csv")
    assert data.name == "rows" and data.modality == "tabular"
    assert data.x.tolist() == [[0.5, 1.0], [1.5, 2.0], [2.5, 3.0]] and data.x.dtype == np.float32
    assert data.class_names == ["no", "yes"] and data.y.tolist() == [1, 0, 1]
    assert data.sample_ids == ["r1", "r2", "r3"]
    assert data.is_mislabeled.tolist() == [False, True, False]
    frame.to_parquet(tmp_path / "rows.parquet")
    parquet = load_dataset(tmp_path / "rows.parquet")
    assert parquet.x.tolist() == data.x.tolist() and parquet.sample_ids == data.sample_ids


def test_csv_content_hash_ids_are_stable_and_unique(tmp_path):
    (tmp_path / "a.csv").write_text("f1,f2,label\n1,2,0\n3,4,1\n1,2,1\n")
    first = load_dataset(tmp_path / "a.csv").sample_ids
    assert len(first[0]) == 16 and first[2] == f"{first[0]}-1" and len(set(first)) == 3
    (tmp_path / "b.csv").write_text("f1,f2,label\n3.0,4.0,0\n1,2,1\n9,9,0\n")
    second = load_dataset(tmp_path / "b.csv").sample_ids
    assert second[0] == first[1] and second[1] == first[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("f1,f2\n1,2\n3,4\n", "lacks column"),
        ("f1,label\n1,a\n2,\n", "row 2: label is missing"),
        ("f1,label\n1,a\n2,a\n", "at least 2 classes"),
        ("f1,label\n1,a\nx,b\n", "'f1' are not numeric"),
        ("f1,label\n1,a\n,b\n", "data row 2, column 'f1'"),
        ("f1,label\n1,a\ninf,b\n", "data row 2, column 'f1'"),
        ("f1,label\n1e300,a\n1,b\n", "too large for float32"),
        ("label\na\nb\n", "no feature columns"),
        ("sample_id,f1,label\nq,1,a\nq,2,b\n", "'q' occurs more than once"),
        ("sample_id,f1,label\nq,1,a\n,2,b\n", "sample_id is missing"),
        ("f1,label\n1,a\n", "at least 2 are needed"),
        ("", "is empty"),
        ('f1,label\n1,"a\n', "not a readable CSV"),
    ],
)
def test_csv_errors(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path / "bad.csv")


def test_corrupt_parquet(tmp_path):
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really parquet")
    with pytest.raises(DatasetError, match="not a readable Parquet"):
        load_dataset(tmp_path / "bad.parquet")


def test_parquet_nullable_label(tmp_path):
    frame = pd.DataFrame({"f": [1.0, 2.0, 3.0], "label": pd.array([1, None, 2], dtype="Int64")})
    frame.to_parquet(tmp_path / "nulls.parquet")
    with pytest.raises(DatasetError, match="row 2"):
        load_dataset(tmp_path / "nulls.parquet")
