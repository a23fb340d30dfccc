"""CSV, TSV and Parquet tables: one row per sample with a ``label`` column, optional
``sample_id`` and ``is_mislabeled`` columns, every other column a numeric feature; and a table
file's feature values as uploaded, read back a chunk of rows at a time (`UploadedValues`)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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

TABLE_COLUMNS = ("label", "sample_id", "is_mislabeled")  # every other column is a feature
VALUE_CHUNK_CELLS = 2**16  # uploaded feature values read back at a time


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
    columns = [c for c in frame.columns if c not in TABLE_COLUMNS]
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


@dataclass(frozen=True)
class UploadedValues:
    """A table file's feature columns (`feature_names`, as the loader names them) and its rows'
    feature values as uploaded: text for CSV and TSV, read with every value a string so that they
    are written back digit for digit; the values pandas reads for Parquet."""

    path: Path
    file_format: str  # "csv", "tsv" or "parquet"
    feature_names: list[str]
    positions: list[int]  # the feature columns' positions among the columns read
    chunk_rows: int

    def chunks(self) -> Iterator[list[list]]:
        """The rows' values (one list a row, in file order), a chunk of rows at a time."""
        if self.file_format == "parquet":
            with pq.ParquetFile(self.path) as table:
                columns = [table.schema_arrow.names[i] for i in self.positions]
                for batch in table.iter_batches(batch_size=self.chunk_rows, columns=columns):
                    yield batch.to_pandas().to_numpy(dtype=object).tolist()
            return
        with pd.read_csv(self.path, **_text_options(self.file_format), chunksize=self.chunk_rows) as reader:
            for frame in reader:
                yield frame.iloc[:, self.positions].to_numpy(dtype=object).tolist()


def uploaded_values(path: Path, file_format: str, chunk_cells: int | None = None) -> UploadedValues:
    """The uploaded table at `path` (its header read now: `DatasetError` when it cannot be read),
    read back `chunk_cells` values (default `VALUE_CHUNK_CELLS`) at a time."""
    try:
        if file_format == "parquet":
            schema = pq.read_schema(path)
            index = {name for name in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(name, str)}
            columns = [name if name not in index else None for name in schema.names]
        else:
            columns = list(pd.read_csv(path, **_text_options(file_format), nrows=0).columns)
    except (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DatasetError(f"{path.name} cannot be read again: {exc}") from None
    positions = [i for i, name in enumerate(columns) if name is not None and str(name).strip() not in TABLE_COLUMNS]
    names = [str(columns[i]).strip() for i in positions]
    chunk_rows = max(1, (chunk_cells or VALUE_CHUNK_CELLS) // max(1, len(positions)))
    return UploadedValues(path, file_format, names, positions, chunk_rows)


def _text_options(file_format: str) -> dict:
    return {"sep": "\t" if file_format == "tsv" else ",", "dtype": str, "keep_default_na": False}
