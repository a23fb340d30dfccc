"""core.loaders.timeseries: tables read as time series by name or by request, and ECG5000."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.loaders import load_dataset

ECG_TRAIN = Path(__file__).resolve().parents[4] / "shared" / "data" / "ecg5000" / "ECG5000_TRAIN.txt"


def test_timeseries_by_name_and_keyword(tmp_path):
    (tmp_path / "beats.ts.csv").write_text("label,t0,t1,t2\n1,0.1,0.2,0.3\n2,0.3,0.2,0.1\n")
    data = load_dataset(tmp_path / "beats.ts.csv")
    assert data.name == "beats" and data.modality == "timeseries" and data.x.shape == (2, 1, 3)
    (tmp_path / "beats.csv").write_text((tmp_path / "beats.ts.csv").read_text())
    assert load_dataset(tmp_path / "beats.csv", modality="timeseries").x.shape == (2, 1, 3)
    assert load_dataset(tmp_path / "beats.csv").modality == "tabular"


@pytest.mark.skipif(not ECG_TRAIN.is_file(), reason="ECG5000 is not available")
def test_ecg5000_csv(tmp_path):
    raw = np.loadtxt(ECG_TRAIN)
    frame = pd.DataFrame(raw[:, 1:], columns=[f"t{i}" for i in range(140)])
    frame.insert(0, "label", raw[:, 0])
    frame.to_csv(tmp_path / "ecg5000.ts.csv", index=False)
    data = load_dataset(tmp_path / "ecg5000.ts.csv")
    assert data.modality == "timeseries" and data.x.shape == (500, 1, 140)
    assert data.class_names == ["1", "2", "3", "4", "5"]
    assert np.bincount(data.y).tolist() == [292, 177, 10, 19, 2]
    assert np.allclose(data.x[:, 0, :], raw[:, 1:], atol=1e-6)
    assert len(set(data.sample_ids)) == 500
