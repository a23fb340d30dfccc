"""``.npz`` archives of arrays: ``x``, ``y``, optional ``flags`` (or ``is_mislabeled``),
``sample_ids`` and ``class_names``, read with ``allow_pickle=False``; ``x``'s shape and dtype
decide the modality."""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path

import numpy as np

from core.dataset import AuditDataset, Modality
from core.errors import DatasetError
from core.loaders.images import resize_array
from core.loaders.limits import MAX_ARRAY_BYTES
from core.loaders.safe_zip import open_zip
from core.loaders.source import FileSource
from core.loaders.timeseries import as_requested
from core.loaders.validation import as_text, check_class_count, float_features, make_dataset, parse_flags

ARRAY_NAMES = ("x", "y", "flags", "is_mislabeled", "sample_ids", "class_names")


def load_npz(source: FileSource) -> AuditDataset:
    path = source.path
    with open_zip(path) as archive:
        _check_array_headers(archive, path.name)
    arrays = _read_npz_arrays(path)
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 1 or x.ndim < 1 or len(x) != len(y):
        raise DatasetError(
            f"{path.name}: x has shape {x.shape} and y {y.shape}; y must be 1-D with one label per row of x"
        )
    x, detected = _npz_features(x, path.name)
    x, detected = as_requested(x, detected, source.modality)
    flags_key = next((k for k in ("flags", "is_mislabeled") if k in arrays), None)
    ids = arrays.get("sample_ids")
    class_names = None if "class_names" not in arrays else _npz_class_names(arrays["class_names"], y, path.name)
    return make_dataset(
        name=source.name,
        modality=detected,
        x=resize_array(x, source.image_size) if detected == "image" else x,
        labels=y,
        sample_ids=[str(i) for i in range(len(y))] if ids is None else _npz_ids(ids, len(y), path.name),
        flags=None if flags_key is None else parse_flags(arrays[flags_key], f"{path.name}:{flags_key}"),
        where=path.name,
        meta={"source": str(path), "format": "npz"},
        class_names=class_names,
    )


def _check_array_headers(archive: zipfile.ZipFile, where: str) -> None:
    """Refuse arrays whose .npy headers claim more bytes than the archive holds for them, or
    more than MAX_ARRAY_BYTES together, before numpy allocates them."""
    total = 0
    for info in archive.infolist():
        key = info.filename.removesuffix(".npy")
        if key not in ARRAY_NAMES or not info.filename.endswith(".npy"):
            continue
        try:
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _fortran, dtype = read_header(member, max_header_size=10_000)
                header_bytes = member.tell()
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError) as exc:
            raise DatasetError(f"{where}: array {key!r} has no readable .npy header: {exc}") from None
        if dtype.hasobject:
            raise DatasetError(
                f"{where} is not a readable .npz file: array {key!r} holds Python objects, which are not unpickled"
            )
        claimed = math.prod(shape) * dtype.itemsize
        held = info.file_size - header_bytes
        if claimed > held:
            raise DatasetError(
                f"{where}: array {key!r} claims shape {shape} ({claimed} bytes) but the file holds {held} bytes for it"
            )
        total += claimed
        if total > MAX_ARRAY_BYTES:
            raise DatasetError(f"{where}: its arrays take more than the {MAX_ARRAY_BYTES} bytes allowed (at {key!r})")


def _read_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in ("x", "y") if key not in npz.files]
            if missing:
                held = ", ".join(npz.files) or "nothing"
                raise DatasetError(f"{path.name} lacks array(s) {', '.join(missing)}; it holds {held}")
            return {key: npz[key] for key in ARRAY_NAMES if key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{path.name} is not a readable .npz file: {exc}") from None


def _npz_features(x: np.ndarray, where: str) -> tuple[np.ndarray, Modality]:
    numeric = x.dtype.kind in "biuf"
    integer = x.dtype.kind in "biu"
    if numeric and x.ndim == 2:
        return float_features(x, where), "tabular"
    if numeric and x.ndim == 3 and not integer:
        return float_features(x, where), "timeseries"
    if integer and x.ndim in (3, 4):
        return _uint8_images(x, where), "image"
    raise DatasetError(
        f"{where}: x has shape {x.shape} and dtype {x.dtype}; expected numeric [N, F] (tabular), "
        "float [N, C, T] (time series) or integer 0..255 [N, H, W] / [N, C, H, W] (images)"
    )


def _uint8_images(x: np.ndarray, where: str) -> np.ndarray:
    if x.size and (x.min() < 0 or x.max() > 255):
        raise DatasetError(f"{where}: image values must lie in 0..255, found {x.min()}..{x.max()}")
    if x.ndim == 3:
        x = x[:, None]
    elif x.shape[1] not in (1, 3):
        if x.shape[3] not in (1, 3):
            raise DatasetError(f"{where}: images of shape {x.shape[1:]} have no channel axis of size 1 or 3")
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.uint8)


def _npz_ids(ids: np.ndarray, count: int, where: str) -> list[str]:
    if ids.shape != (count,):
        raise DatasetError(f"{where}: sample_ids has shape {ids.shape}, expected ({count},)")
    return [as_text(value, f"{where}:sample_ids row {row}", "sample id") for row, value in enumerate(ids.tolist())]


def _npz_class_names(names: np.ndarray, y: np.ndarray, where: str) -> list[str]:
    """`class_names` given with the labels: y holds indices into it, in that order."""
    texts = [as_text(value, f"{where}:class_names row {row}", "class name") for row, value in enumerate(names.tolist())]
    if names.ndim != 1 or len(set(texts)) != len(texts):
        raise DatasetError(f"{where}: class_names must be a list of distinct names")
    if y.dtype.kind not in "iu" or (len(y) and (y.min() < 0 or y.max() >= len(texts))):
        raise DatasetError(f"{where}: with class_names, y must hold class indices 0..{len(texts) - 1}")
    check_class_count(texts, where)
    return texts
