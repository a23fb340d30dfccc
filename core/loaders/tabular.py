"""CSV, TSV and Parquet tables: one row per sample with a ``label`` column, optional
``sample_id`` and ``is_mislabeled`` columns, every other column a numeric feature."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.dataset import AuditDataset
from core.errors import DatasetError
from core.loaders.limits import MAX_PARQUET_BYTES, MAX_TABLE_BYTES
from core.loaders.source import FileSource
from core.loaders.timeseries import as_requested
from core.loaders.validation import as_text, float_features, make_dataset, parse_flags


def load_csv(source: FileSource) -> AuditDataset:
    _check_table_size(source.path)
    return _load_table(source, read_csv(source.path, source.path.name, sep=","), "csv")


def load_tsv(source: FileSource) -> AuditDataset:
    _check_table_size(source.path)
    return _load_table(source, read_csv(source.path, source.path.name, sep="\t"), "tsv")


def load_parquet(source: FileSource) -> AuditDataset:
    return _load_table(source, _read_parquet(source.path), "parquet")


def _check_table_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_TABLE_BYTES:
        raise DatasetError(
            f"{path.name} is {size} bytes, more than the {MAX_TABLE_BYTES} allowed for a CSV/TSV table "
            "(a Parquet or .npz file holds more)"
        )


def _load_table(source: FileSource, frame: pd.DataFrame, file_format: str) -> AuditDataset:
    where = source.path.name
    frame.columns = [str(column).strip() for column in frame.columns]
    require_columns(frame, ("label",), where)
    features = _table_features(frame, where)
    x, detected = as_requested(float_features(features, where), "tabular", source.modality)
    ids = _table_ids(frame["sample_id"], where) if "sample_id" in frame else _content_ids(features)
    flags = parse_flags(frame["is_mislabeled"].to_numpy(), where) if "is_mislabeled" in frame else None
    return make_dataset(
        name=source.name,
        modality=detected,
        x=x,
        labels=frame["label"].to_numpy(),
        sample_ids=ids,
        flags=flags,
        where=where,
        meta={"source": str(source.path), "format": file_format},
    )


def read_csv(source, where: str, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(source, **options)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{where} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DatasetError(f"{where} is not a readable CSV file: {exc}") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        metadata = pq.read_metadata(path)
        size = sum(metadata.row_group(group).total_byte_size for group in range(metadata.num_row_groups))
        if size > MAX_PARQUET_BYTES:
            raise DatasetError(
                f"{path.name} holds {size} bytes of data uncompressed, more than the {MAX_PARQUET_BYTES} allowed"
            )
        return pd.read_parquet(path)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise DatasetError(f"{path.name} is not a readable Parquet file: {exc}") from None


def require_columns(frame: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns[:10])) or "none"
        raise DatasetError(f"{where} lacks column(s) {', '.join(missing)} (found: {found})")


def _table_features(frame: pd.DataFrame, where: str) -> np.ndarray:
    columns = [c for c in frame.columns if c not in ("label", "sample_id", "is_mislabeled")]
    if not columns:
        raise DatasetError(f"{where} has no feature columns besides label")
    text = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise DatasetError(f"{where}: feature column(s) {', '.join(map(repr, text[:5]))} are not numeric")
    values = frame[columns].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise DatasetError(f"{where}: data row {row + 1}, column {columns[column]!r} is missing, NaN or infinite")
    return values


def _table_ids(column: pd.Series, where: str) -> list[str]:
    return [as_text(value, f"{where} data row {row}", "sample_id") for row, value in enumerate(column.tolist(), start=1)]


def _content_ids(features: np.ndarray) -> list[str]:
    """Without a sample_id column: the first 16 hex digits of the sha1 of the row's float64
    features (the label left out, so relabelling keeps the id); duplicates get -1, -2... in row order."""
    ids, seen = [], Counter()
    for row in np.ascontiguousarray(features + 0.0, dtype=np.float64):
        digest = hashlib.sha1(row.tobytes()).hexdigest()[:16]
        ids.append(digest if seen[digest] == 0 else f"{digest}-{seen[digest]}")
        seen[digest] += 1
    return ids
