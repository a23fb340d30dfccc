"""The checks every format shares: turning parsed features, labels, ids and flags into a checked
`AuditDataset`, with errors that name the file, member or row."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.dataset import AuditDataset
from core.errors import DatasetError

TRUE_TEXTS = {"1", "1.0", "true", "t", "yes", "y"}
FALSE_TEXTS = {"0", "0.0", "false", "f", "no", "n"}


def make_dataset(*, name, modality, x, labels, sample_ids, flags, where, meta, class_names=None) -> AuditDataset:
    if len(labels) < 2:
        raise DatasetError(f"{where} holds {len(labels)} sample(s); at least 2 are needed")
    if not (len(x) == len(labels) == len(sample_ids)):
        raise DatasetError(f"{where}: {len(x)} samples but {len(labels)} labels")
    if flags is not None and len(flags) != len(labels):
        raise DatasetError(f"{where}: {len(flags)} is_mislabeled flags for {len(labels)} samples")
    _check_unique(sample_ids, where)
    if isinstance(labels, CodedLabels):
        y, class_names = _encode_label_codes(labels, where)
    elif class_names is None:
        y, class_names = _encode_labels(labels, where)
    else:
        y = np.asarray(labels, dtype=np.int64)
    return AuditDataset(
        name=name, modality=modality, x=x, y=y, class_names=class_names,
        sample_ids=list(sample_ids), is_mislabeled=flags, meta=meta,
    )  # fmt: skip


def _check_unique(sample_ids: Sequence[str], where: str) -> None:
    if len(set(sample_ids)) == len(sample_ids):  # a set, not a Counter: half the memory for a million ids
        return
    duplicates = [sid for sid, n in Counter(sample_ids).items() if n > 1]
    raise DatasetError(f"{where}: sample id {duplicates[0]!r} occurs more than once")


def float_features(x: np.ndarray, where: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = np.ascontiguousarray(x, dtype=np.float32)
    _check_finite(x, where)
    return x


def _check_finite(x: np.ndarray, where: str) -> None:
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0][0])
        raise DatasetError(f"{where}: sample {row} has NaN or infinite values (or values too large for float32)")


def _encode_labels(labels, where: str) -> tuple[np.ndarray, list[str]]:
    array = np.asarray(labels)
    if array.dtype.kind in "iuf":
        return _encode_numeric_labels(array, where)
    texts = [as_text(value, f"{where} data row {row}", "label") for row, value in enumerate(array.tolist(), start=1)]
    names = sorted(set(texts), key=_label_sort_key)
    check_class_count(names, where)
    index = {name: i for i, name in enumerate(names)}
    return np.fromiter((index[t] for t in texts), dtype=np.int64, count=len(texts)), names


@dataclass(frozen=True)
class CodedLabels:
    """Labels as `values[codes]`, one integer a sample instead of one object (`values` in the
    order of their first sample); `make_dataset` encodes them as it encodes their list."""

    codes: np.ndarray
    values: list

    def __len__(self) -> int:
        return len(self.codes)


def _encode_label_codes(labels: CodedLabels, where: str) -> tuple[np.ndarray, list[str]]:
    codes = labels.codes
    first_rows = np.unique(codes, return_index=True)[1] + 1  # each value's first data row, by code
    rows = zip(labels.values, first_rows.tolist(), strict=True)
    texts = [as_text(value, f"{where} data row {row}", "label") for value, row in rows]
    names = sorted(set(texts), key=_label_sort_key)
    check_class_count(names, where)
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[text] for text in texts], dtype=np.int64)[codes], names


def _encode_numeric_labels(array: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise DatasetError(f"{where}: label of data row {int(np.argmax(bad)) + 1} is missing")
        if np.all(array == np.round(array)):
            array = array.astype(np.int64)
    values, y = np.unique(array, return_inverse=True)
    names = [str(v) for v in values.tolist()]
    check_class_count(names, where)
    return y.astype(np.int64), names


def check_class_count(names: list[str], where: str) -> None:
    if len(names) < 2:
        raise DatasetError(f"{where}: every sample has the label {names[0]!r}; at least 2 classes are needed")


def as_text(value, where: str, what: str) -> str:
    """`value` (a label, id or class name) as stripped text; bytes must be UTF-8, whole floats lose their .0."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise DatasetError(f"{where}: {what} is not valid UTF-8") from None
    if not isinstance(value, str) and (pd.isna(value) or value in (math.inf, -math.inf)):
        raise DatasetError(f"{where}: {what} is missing")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text:
        raise DatasetError(f"{where}: {what} is empty")
    return text


def _label_sort_key(name: str) -> tuple[int, float, str]:
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def parse_flags(values, where: str) -> np.ndarray:
    """`is_mislabeled` values (bools, 0/1 or the texts of TRUE_TEXTS / FALSE_TEXTS) as a bool array."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise DatasetError(f"{where}: is_mislabeled flags must be 1-D, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array.copy()
    if array.dtype.kind in "iuf":
        if not np.isin(array, (0, 1)).all():
            raise DatasetError(f"{where}: is_mislabeled values must be 0/1 or true/false")
        return array.astype(bool)
    return np.array([_flag(value, where, row) for row, value in enumerate(array.tolist(), start=1)], dtype=bool)


def _flag(value, where: str, row: int) -> bool:
    if isinstance(value, bool):
        return value
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip().lower()
    if text in TRUE_TEXTS:
        return True
    if text in FALSE_TEXTS:
        return False
    raise DatasetError(f"{where} data row {row}: is_mislabeled {value!r} is not one of true/false/1/0/yes/no")
