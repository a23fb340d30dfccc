"""Which tables are time series, and how their rows become series: a ``*.ts.csv`` (``.ts.tsv``,
``.ts.parquet``, ``.ts.pq``) name or ``modality="timeseries"`` turns tabular [N, T] rows into
[N, 1, T] series."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from core.dataset import Modality

TIMESERIES_SUFFIXES = (".ts.csv", ".ts.tsv", ".ts.parquet", ".ts.pq")


def requested_modality(path: Path, modality: Modality | None) -> Modality | None:
    """The modality asked for, or time series for a ``*.ts.*`` file when none was."""
    if path.name.lower().endswith(TIMESERIES_SUFFIXES) and modality is None:
        return "timeseries"
    return modality


def as_requested(x: np.ndarray, detected: Modality, requested: Modality | None) -> tuple[np.ndarray, Modality]:
    if requested == "timeseries" and detected == "tabular":
        return x[:, None, :], "timeseries"
    return x, detected
