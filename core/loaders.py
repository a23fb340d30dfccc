"""Turn a user's file, or a built-in name, into an `AuditDataset`.

Sources `load_dataset` understands:

- ``digits``: scikit-learn's 8x8 digits (shipped in the wheel), uint8 [1797, 1, 8, 8] scaled
  from 0..16 to 0..255; ids ``digits-<index>``.
- ``fashion-mnist`` or ``fashion-mnist:DIR``: the idx files ``{train,t10k}-{images-idx3,
  labels-idx1}-ubyte[.gz]`` in DIR, else ``$LILAW_FASHION_MNIST_DIR``, else
  /usr/share/datasets/fashion-mnist. The train split is the dataset, t10k its ``test``;
  ids ``fashion-mnist-train-<index>`` / ``fashion-mnist-test-<index>``.
- ``.zip`` of images, either class folders (``cls_a/img1.png``, optionally all under one
  top-level folder; deeper sub-folders belong to their class folder) or images plus a
  ``labels.csv`` (``file,label[,is_mislabeled]``, paths relative to the csv) at the root or in
  the single top-level folder. Ids are the member paths. Files that are neither images nor
  listed are skipped and named in ``meta["skipped_members"]``.
- ``.npz`` with ``x``, ``y``, optional ``flags`` (or ``is_mislabeled``), optional
  ``sample_ids`` and optional ``class_names`` (then ``y`` holds indices into it, in that order),
  loaded with ``allow_pickle=False``; ids default to the row index. ``x``
  decides the modality: 2-D -> tabular [N, F]; 3-D float -> time series [N, C, T]; 3-D or 4-D
  integer (values 0..255) -> images [N, H, W] / [N, C, H, W] / [N, H, W, C] with C in {1, 3}.
- ``.csv``, ``.tsv``, ``.parquet``/``.pq``: one row per sample with a ``label`` column,
  optional ``sample_id`` and ``is_mislabeled`` columns, every other column a numeric feature.
  Tabular unless the name ends in ``.ts.csv``/``.ts.tsv``/``.ts.parquet`` or
  ``modality="timeseries"`` (then x is [N, 1, T]). Without ``sample_id`` the id is the first 16
  hex digits of the sha1 of the row's feature values (float64 bytes; the label is left out so
  that relabelling keeps the id); duplicates get ``-1``, ``-2``... in row order.

A file with another suffix is recognised by content (zip, npz or parquet magic bytes).
Images are decoded with Pillow, at most `max_pixels` pixels over the whole archive, converted
to L when every image is grayscale and to RGB otherwise, and resized (bilinear) to
`image_size` x `image_size`, or by default to the most common size with its longer side capped
at 224. Array sources (npz, built-ins) are resized only when `image_size` is given.
`limit` keeps a stratified, seeded (always the same) subset of that many samples; the test
split is kept whole. Class names are the sorted unique labels (numeric labels sorted by value).

Zips are checked before anything is read: no absolute or ``..`` member paths, no encrypted
members, at most 200,000 members, at most 4 GiB uncompressed, and no member of 1 MiB or more
compressed more than 100:1. Members are read into memory one at a time, never extracted.
Every problem with the input raises `DatasetError` naming the file, member or row.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import posixpath
import re
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image, ImageOps

from core.dataset import AuditDataset, Modality
from core.errors import ConfigError, DatasetError
from core.noise import stratified_choice

MAX_ZIP_MEMBERS = 200_000
MAX_ZIP_UNCOMPRESSED = 4 * 1024**3
MAX_COMPRESSION_RATIO = 100
RATIO_CHECK_MIN_BYTES = 1024**2
MAX_DEFAULT_IMAGE_SIDE = 224
SUBSET_SEED = 0

BUILTINS = ("digits", "fashion-mnist")
FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "LILAW_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip

MODALITIES = ("image", "tabular", "timeseries")
TABLE_SEPARATORS = {".csv": ",", ".tsv": "\t"}
PARQUET_SUFFIXES = (".parquet", ".pq")
TIMESERIES_SUFFIXES = (".ts.csv", ".ts.tsv", ".ts.parquet", ".ts.pq")
GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
IMAGE_SUFFIXES = frozenset(Image.registered_extensions())
TRUE_TEXTS = {"1", "1.0", "true", "t", "yes", "y"}
FALSE_TEXTS = {"0", "0.0", "false", "f", "no", "n"}
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def load_dataset(
    source: str | Path,
    *,
    image_size: int | None = None,
    max_pixels: int = 50_000_000,
    limit: int | None = None,
    modality: Modality | None = None,
) -> AuditDataset:
    """Load `source` (a file path or a built-in name) as an `AuditDataset`."""
    _check_options(image_size, max_pixels, limit, modality)
    builtin = _builtin(source)
    if builtin is not None:
        dataset = _load_builtin(*builtin, image_size=image_size)
    else:
        dataset = _load_file(Path(source), image_size, max_pixels, modality)
    if modality is not None and dataset.modality != modality:
        raise DatasetError(f"{dataset.name} holds {dataset.modality} data, not {modality}")
    return dataset if limit is None else _subset(dataset, limit)


# ---------------------------------------------------------------- options and dispatch


def _check_options(image_size, max_pixels, limit, modality) -> None:
    _check_integer("max_pixels", max_pixels, 1)
    if image_size is not None:
        _check_integer("image_size", image_size, 1)
    if limit is not None:
        _check_integer("limit", limit, 2)
    if modality is not None and modality not in MODALITIES:
        raise ConfigError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")


def _check_integer(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")


def _builtin(source: str | Path) -> tuple[str, str | None] | None:
    text = str(source)
    name, _, argument = text.partition(":")
    if name in BUILTINS and (not argument or name == "fashion-mnist"):
        return name, argument or None
    if not Path(text).exists() and not re.search(r"[./\\]", text):
        raise DatasetError(f"unknown built-in dataset {text!r}; built-ins are {', '.join(BUILTINS)}")
    return None


def _load_builtin(name: str, argument: str | None, *, image_size: int | None) -> AuditDataset:
    if name == "digits":
        return _load_digits(image_size)
    return _load_fashion_mnist(argument, image_size)


def _load_file(path: Path, image_size, max_pixels, modality) -> AuditDataset:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist or is not a file")
    lower = path.name.lower()
    if lower.endswith(TIMESERIES_SUFFIXES) and modality is None:
        modality = "timeseries"
    kind = _format_of(path)
    if kind == "zip":
        return _load_image_zip(path, image_size, max_pixels)
    if kind == "npz":
        return _load_npz(path, image_size, modality)
    return _load_table(path, kind, modality)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return "zip"
    if suffix == ".npz":
        return "npz"
    if suffix in TABLE_SEPARATORS or suffix in PARQUET_SUFFIXES:
        return suffix
    return _sniff_format(path, suffix)


def _sniff_format(path: Path, suffix: str) -> str:
    with path.open("rb") as handle:
        magic = handle.read(8)
    if magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        with _open_zip(path) as archive:
            names = [info.filename for info in archive.infolist()]
        return "npz" if names and all(n.endswith(".npy") for n in names) else "zip"
    if magic.startswith(b"PAR1"):
        return ".parquet"
    if magic.startswith(b"\x93NUMPY"):
        raise DatasetError(f"{path.name} is a single .npy array; save x and y together with numpy.savez")
    raise DatasetError(
        f"{path.name}: unrecognised format (suffix {suffix or 'none'!r}); expected .zip, .npz, "
        f".csv, .tsv, .parquet or a built-in name ({', '.join(BUILTINS)})"
    )


def _dataset_name(path: Path) -> str:
    name = path.name
    for suffix in (*TIMESERIES_SUFFIXES, ".zip", ".npz", ".csv", ".tsv", *PARQUET_SUFFIXES):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


# ---------------------------------------------------------------- built-ins


def _load_digits(image_size: int | None) -> AuditDataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = np.round(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    return AuditDataset(
        name="digits",
        modality="image",
        x=_resize_array(x, image_size),
        y=bunch.target.astype(np.int64),
        class_names=[str(c) for c in range(10)],
        sample_ids=[f"digits-{i}" for i in range(len(x))],
        meta={"source": "digits", "format": "builtin"},
    )


def _load_fashion_mnist(directory: str | None, image_size: int | None) -> AuditDataset:
    root = Path(directory or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT_DIR)
    if not root.is_dir():
        raise DatasetError(
            f"Fashion-MNIST directory {root} not found; install the dataset-fashion-mnist package, "
            f"set {FASHION_MNIST_ENV} or pass fashion-mnist:/path/to/dir"
        )
    train = _fashion_mnist_split(root, "train", "train", image_size)
    train.test = _fashion_mnist_split(root, "t10k", "test", image_size)
    return train


def _fashion_mnist_split(root: Path, prefix: str, split: str, image_size: int | None) -> AuditDataset:
    images = _read_idx(_idx_path(root, f"{prefix}-images-idx3-ubyte"), ndim=3)
    labels = _read_idx(_idx_path(root, f"{prefix}-labels-idx1-ubyte"), ndim=1)
    if images.dtype != np.uint8 or len(images) != len(labels):
        raise DatasetError(f"{root}: {prefix} images ({len(images)}) and labels ({len(labels)}) do not match")
    if labels.min() < 0 or labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DatasetError(f"{root}: {prefix} labels fall outside 0..9")
    return AuditDataset(
        name="fashion-mnist" if split == "train" else "fashion-mnist-test",
        modality="image",
        x=_resize_array(images[:, None], image_size),
        y=labels.astype(np.int64),
        class_names=list(FASHION_MNIST_CLASSES),
        sample_ids=[f"fashion-mnist-{split}-{i}" for i in range(len(labels))],
        meta={"source": str(root), "format": "builtin", "split": split},
    )


def _idx_path(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{root}: {stem}[.gz] not found")


def _read_idx(path: Path, *, ndim: int) -> np.ndarray:
    """Parse an idx file (gzipped or not): 2 zero bytes, a dtype code, ndim, big-endian dims."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"{path.name} is a corrupt gzip file: {exc}") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_DTYPES:
        raise DatasetError(f"{path.name} is not an idx file (bad magic number)")
    if raw[3] != ndim:
        raise DatasetError(f"{path.name} has {raw[3]} dimensions, expected {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path.name} is truncated in its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    if len(raw) - header != math.prod(shape) * dtype.itemsize:
        raise DatasetError(f"{path.name}: {len(raw) - header} data bytes do not match shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


# ---------------------------------------------------------------- zips of images


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise DatasetError(f"{path.name} is not a readable zip archive: {exc}") from None
    try:
        _check_zip_safety(archive, path.name)
    except DatasetError:
        archive.close()
        raise
    return archive


def _check_zip_safety(archive: zipfile.ZipFile, where: str) -> None:
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_MEMBERS:
        raise DatasetError(f"{where} has {len(infos)} members, more than the {MAX_ZIP_MEMBERS} allowed")
    total = 0
    for info in infos:
        _check_member(info, where)
        total += info.file_size
    if total > MAX_ZIP_UNCOMPRESSED:
        raise DatasetError(f"{where} expands to {total} bytes, more than the {MAX_ZIP_UNCOMPRESSED} allowed")


def _check_member(info: zipfile.ZipInfo, where: str) -> None:
    name = info.filename
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) or ".." in parts:
        raise DatasetError(f"{where}: member {name!r} has an unsafe path (absolute or with '..')")
    if info.flag_bits & 0x1:
        raise DatasetError(f"{where}: member {name!r} is encrypted")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size >= RATIO_CHECK_MIN_BYTES and ratio > MAX_COMPRESSION_RATIO:
        raise DatasetError(
            f"{where}: member {name!r} is compressed {ratio:.0f}:1, more than the "
            f"{MAX_COMPRESSION_RATIO}:1 allowed (zip bomb?)"
        )


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str) -> bytes:
    try:
        with archive.open(info) as member:
            data = member.read(info.file_size + 1)
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError, OSError, EOFError, zlib.error) as exc:
        raise DatasetError(f"{where}: member {info.filename!r} cannot be read: {exc}") from None
    if len(data) != info.file_size:
        raise DatasetError(f"{where}: member {info.filename!r} does not match its declared size")
    return data


def _is_junk(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or any(part.startswith(".") for part in parts) or parts[-1] == "Thumbs.db"


def _is_image_name(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _load_image_zip(path: Path, image_size: int | None, max_pixels: int) -> AuditDataset:
    with _open_zip(path) as archive:
        files = {
            info.filename: info
            for info in sorted(archive.infolist(), key=lambda info: info.filename)
            if not info.is_dir() and not _is_junk(info.filename)
        }
        labels_csv = _find_labels_csv(list(files))
        if labels_csv is not None:
            entries, flags = _entries_from_labels_csv(archive, files, labels_csv, path.name)
            layout = "images+labels.csv"
        else:
            entries, flags = _entries_from_folders(list(files), path.name), None
            layout = "imagefolder"
        members = [member for member, _ in entries]
        images = _decode_images(archive, [files[m] for m in members], path.name, max_pixels)
    used = set(members)
    skipped = [name for name in files if name not in used and name != labels_csv]
    return _make_dataset(
        name=_dataset_name(path),
        modality="image",
        x=_stack_images(images, image_size),
        labels=[label for _, label in entries],
        sample_ids=members,
        flags=flags,
        where=path.name,
        meta={"source": str(path), "format": layout, "skipped_members": skipped},
    )


def _find_labels_csv(names: list[str]) -> str | None:
    tops = {name.split("/")[0] for name in names}
    allowed = {"labels.csv"} | ({f"{tops.pop()}/labels.csv"} if len(tops) == 1 else set())
    return next((name for name in names if name in allowed), None)


def _entries_from_folders(names: list[str], where: str) -> list[tuple[str, str]]:
    images = [name for name in names if _is_image_name(name)]
    if not images:
        raise DatasetError(f"{where} holds no images (and no labels.csv)")
    parts = [name.split("/") for name in images]
    strip = len({p[0] for p in parts}) == 1 and all(len(p) >= 3 for p in parts)
    entries = []
    for name, pieces in zip(images, parts, strict=True):
        pieces = pieces[1:] if strip else pieces
        if len(pieces) < 2:
            raise DatasetError(
                f"{where}: image {name!r} is not inside a class folder; expected "
                "class_name/image.png (ImageFolder layout) or a labels.csv"
            )
        entries.append((name, pieces[0]))
    return entries


def _entries_from_labels_csv(archive, files, labels_csv: str, where: str):
    place = f"{where}:{labels_csv}"
    data = _read_member(archive, files[labels_csv], where)
    frame = _read_csv(io.BytesIO(data), place, dtype=str, keep_default_na=False)
    frame.columns = [str(column).strip() for column in frame.columns]
    _require_columns(frame, ("file", "label"), place)
    base = posixpath.dirname(labels_csv)
    entries, seen = [], set()
    for row, (file, label) in enumerate(zip(frame["file"], frame["label"], strict=True), start=1):
        member = _resolve_member(file, base, files, f"{place} row {row}")
        if member in seen:
            raise DatasetError(f"{place} row {row}: file {file!r} is listed twice")
        seen.add(member)
        entries.append((member, label))
    flags = _parse_flags(frame["is_mislabeled"].to_numpy(), place) if "is_mislabeled" in frame else None
    return entries, flags


def _resolve_member(file, base: str, files: dict, where: str) -> str:
    text = "" if pd.isna(file) else str(file).strip()
    if not text:
        raise DatasetError(f"{where}: empty file name")
    for candidate in (posixpath.normpath(posixpath.join(base, text)), posixpath.normpath(text)):
        if candidate in files:
            return candidate
    raise DatasetError(f"{where}: file {text!r} is not in the archive")


def _decode_images(archive, infos, where: str, max_pixels: int) -> list[Image.Image]:
    images, total = [], 0
    for info in infos:
        place = f"{where}:{info.filename}"
        image = _open_image(_read_member(archive, info, where), place)
        total += image.width * image.height
        if total > max_pixels:
            raise DatasetError(f"{where}: the images hold more than {max_pixels} pixels in all (at {info.filename!r})")
        images.append(_decode(image, place))
    return images


def _open_image(data: bytes, where: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except Exception as exc:  # Pillow's format plugins raise many exception types
        raise DatasetError(f"{where} is not a readable image: {exc}") from None


def _decode(image: Image.Image, where: str) -> Image.Image:
    try:
        image.load()
        return ImageOps.exif_transpose(image)
    except Exception as exc:  # Pillow's format plugins raise many exception types
        raise DatasetError(f"{where} is not a readable image: {exc}") from None


def _stack_images(images: list[Image.Image], image_size: int | None) -> np.ndarray:
    gray = all(image.mode in GRAYSCALE_MODES for image in images)
    width, height = (image_size, image_size) if image_size else _default_size(images)
    x = np.empty((len(images), 1 if gray else 3, height, width), dtype=np.uint8)
    for i, image in enumerate(images):
        converted = _to_gray(image) if gray else image.convert("RGB")
        if converted.size != (width, height):
            converted = converted.resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(converted)
        x[i] = pixels[None] if gray else pixels.transpose(2, 0, 1)
    return x


def _to_gray(image: Image.Image) -> Image.Image:
    if image.mode in ("1", "L", "LA"):
        return image.convert("L")
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.max(initial=0) > 255:
        pixels = pixels * (255 / 65535)
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))


def _default_size(images: list[Image.Image]) -> tuple[int, int]:
    width, height = Counter(image.size for image in images).most_common(1)[0][0]
    longest = max(width, height)
    if longest <= MAX_DEFAULT_IMAGE_SIDE:
        return width, height
    scale = MAX_DEFAULT_IMAGE_SIDE / longest
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize_array(x: np.ndarray, image_size: int | None) -> np.ndarray:
    if image_size is None or x.shape[2:] == (image_size, image_size):
        return x
    out = np.empty((len(x), x.shape[1], image_size, image_size), dtype=np.uint8)
    for i, sample in enumerate(x):
        image = Image.fromarray(sample[0] if x.shape[1] == 1 else sample.transpose(1, 2, 0))
        pixels = np.asarray(image.resize((image_size, image_size), Image.Resampling.BILINEAR))
        out[i] = pixels[None] if x.shape[1] == 1 else pixels.transpose(2, 0, 1)
    return out


# ---------------------------------------------------------------- npz


def _load_npz(path: Path, image_size: int | None, modality: Modality | None) -> AuditDataset:
    _open_zip(path).close()
    arrays = _read_npz_arrays(path)
    x, y = arrays["x"], arrays["y"]
    if y.ndim != 1 or x.ndim < 1 or len(x) != len(y):
        raise DatasetError(
            f"{path.name}: x has shape {x.shape} and y {y.shape}; y must be 1-D with one label per row of x"
        )
    x, detected = _npz_features(x, path.name)
    x, detected = _coerce_modality(x, detected, modality)
    flags_key = next((k for k in ("flags", "is_mislabeled") if k in arrays), None)
    ids = arrays.get("sample_ids")
    class_names = None if "class_names" not in arrays else _npz_class_names(arrays["class_names"], y, path.name)
    return _make_dataset(
        name=_dataset_name(path),
        modality=detected,
        x=_resize_array(x, image_size) if detected == "image" else x,
        labels=y,
        sample_ids=[str(i) for i in range(len(y))] if ids is None else _npz_ids(ids, len(y), path.name),
        flags=None if flags_key is None else _parse_flags(arrays[flags_key], f"{path.name}:{flags_key}"),
        where=path.name,
        meta={"source": str(path), "format": "npz"},
        class_names=class_names,
    )


def _read_npz_arrays(path: Path) -> dict[str, np.ndarray]:
    wanted = ("x", "y", "flags", "is_mislabeled", "sample_ids", "class_names")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in ("x", "y") if key not in npz.files]
            if missing:
                held = ", ".join(npz.files) or "nothing"
                raise DatasetError(f"{path.name} lacks array(s) {', '.join(missing)}; it holds {held}")
            return {key: npz[key] for key in wanted if key in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{path.name} is not a readable .npz file: {exc}") from None


def _npz_features(x: np.ndarray, where: str) -> tuple[np.ndarray, Modality]:
    numeric = x.dtype.kind in "biuf"
    integer = x.dtype.kind in "biu"
    if numeric and x.ndim == 2:
        return _float_features(x, where), "tabular"
    if numeric and x.ndim == 3 and not integer:
        return _float_features(x, where), "timeseries"
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
    return [_text(value, f"{where}:sample_ids row {row}", "sample id") for row, value in enumerate(ids.tolist())]


def _npz_class_names(names: np.ndarray, y: np.ndarray, where: str) -> list[str]:
    """`class_names` given with the labels: y holds indices into it, in that order."""
    texts = [_text(value, f"{where}:class_names row {row}", "class name") for row, value in enumerate(names.tolist())]
    if names.ndim != 1 or len(set(texts)) != len(texts):
        raise DatasetError(f"{where}: class_names must be a list of distinct names")
    if y.dtype.kind not in "iu" or (len(y) and (y.min() < 0 or y.max() >= len(texts))):
        raise DatasetError(f"{where}: with class_names, y must hold class indices 0..{len(texts) - 1}")
    _check_class_count(texts, where)
    return texts


def _coerce_modality(x: np.ndarray, detected: Modality, requested: Modality | None) -> tuple[np.ndarray, Modality]:
    if requested == "timeseries" and detected == "tabular":
        return x[:, None, :], "timeseries"
    return x, detected


# ---------------------------------------------------------------- csv / parquet


def _load_table(path: Path, kind: str, modality: Modality | None) -> AuditDataset:
    if kind in PARQUET_SUFFIXES:
        frame = _read_parquet(path)
    else:
        frame = _read_csv(path, path.name, sep=TABLE_SEPARATORS[kind])
    frame.columns = [str(column).strip() for column in frame.columns]
    _require_columns(frame, ("label",), path.name)
    features = _table_features(frame, path.name)
    x, detected = _coerce_modality(_float_features(features, path.name), "tabular", modality)
    ids = _table_ids(frame["sample_id"], path.name) if "sample_id" in frame else _content_ids(features)
    flags = _parse_flags(frame["is_mislabeled"].to_numpy(), path.name) if "is_mislabeled" in frame else None
    return _make_dataset(
        name=_dataset_name(path),
        modality=detected,
        x=x,
        labels=frame["label"].to_numpy(),
        sample_ids=ids,
        flags=flags,
        where=path.name,
        meta={"source": str(path), "format": "parquet" if kind in PARQUET_SUFFIXES else kind.lstrip(".")},
    )


def _read_csv(source, where: str, **options) -> pd.DataFrame:
    try:
        return pd.read_csv(source, **options)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"{where} is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DatasetError(f"{where} is not a readable CSV file: {exc}") from None


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise DatasetError(f"{path.name} is not a readable Parquet file: {exc}") from None


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], where: str) -> None:
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
    return [_text(value, f"{where} data row {row}", "sample_id") for row, value in enumerate(column.tolist(), start=1)]


def _content_ids(features: np.ndarray) -> list[str]:
    ids, seen = [], Counter()
    for row in np.ascontiguousarray(features + 0.0, dtype=np.float64):
        digest = hashlib.sha1(row.tobytes()).hexdigest()[:16]
        ids.append(digest if seen[digest] == 0 else f"{digest}-{seen[digest]}")
        seen[digest] += 1
    return ids


# ---------------------------------------------------------------- shared checks


def _make_dataset(*, name, modality, x, labels, sample_ids, flags, where, meta, class_names=None) -> AuditDataset:
    if len(labels) < 2:
        raise DatasetError(f"{where} holds {len(labels)} sample(s); at least 2 are needed")
    if not (len(x) == len(labels) == len(sample_ids)):
        raise DatasetError(f"{where}: {len(x)} samples but {len(labels)} labels")
    if flags is not None and len(flags) != len(labels):
        raise DatasetError(f"{where}: {len(flags)} is_mislabeled flags for {len(labels)} samples")
    _check_unique(sample_ids, where)
    if class_names is None:
        y, class_names = _encode_labels(labels, where)
    else:
        y = np.asarray(labels, dtype=np.int64)
    return AuditDataset(
        name=name, modality=modality, x=x, y=y, class_names=class_names,
        sample_ids=list(sample_ids), is_mislabeled=flags, meta=meta,
    )  # fmt: skip


def _check_unique(sample_ids: Sequence[str], where: str) -> None:
    duplicates = [sid for sid, n in Counter(sample_ids).items() if n > 1]
    if duplicates:
        raise DatasetError(f"{where}: sample id {duplicates[0]!r} occurs more than once")


def _check_finite(x: np.ndarray, where: str) -> None:
    if not np.isfinite(x).all():
        row = int(np.argwhere(~np.isfinite(x))[0][0])
        raise DatasetError(f"{where}: sample {row} has NaN or infinite values (or values too large for float32)")


def _float_features(x: np.ndarray, where: str) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = np.ascontiguousarray(x, dtype=np.float32)
    _check_finite(x, where)
    return x


def _encode_labels(labels, where: str) -> tuple[np.ndarray, list[str]]:
    array = np.asarray(labels)
    if array.dtype.kind in "iuf":
        return _encode_numeric_labels(array, where)
    texts = [_text(value, f"{where} data row {row}", "label") for row, value in enumerate(array.tolist(), start=1)]
    names = sorted(set(texts), key=_label_sort_key)
    _check_class_count(names, where)
    index = {name: i for i, name in enumerate(names)}
    return np.fromiter((index[t] for t in texts), dtype=np.int64, count=len(texts)), names


def _encode_numeric_labels(array: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            raise DatasetError(f"{where}: label of data row {int(np.argmax(bad)) + 1} is missing")
        if np.all(array == np.round(array)):
            array = array.astype(np.int64)
    values, y = np.unique(array, return_inverse=True)
    names = [str(v) for v in values.tolist()]
    _check_class_count(names, where)
    return y.astype(np.int64), names


def _check_class_count(names: list[str], where: str) -> None:
    if len(names) < 2:
        raise DatasetError(f"{where}: every sample has the label {names[0]!r}; at least 2 classes are needed")


def _text(value, where: str, what: str) -> str:
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


def _parse_flags(values, where: str) -> np.ndarray:
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


# ---------------------------------------------------------------- subsets


def _subset(dataset: AuditDataset, limit: int) -> AuditDataset:
    if limit >= len(dataset):
        return dataset
    index = stratified_choice(dataset.y, limit, np.random.default_rng(SUBSET_SEED))
    if len(np.unique(dataset.y[index])) < 2:
        raise DatasetError(f"{dataset.name}: limit {limit} is too small to keep 2 classes")
    return replace(
        dataset,
        x=dataset.x[index],
        y=dataset.y[index],
        sample_ids=[dataset.sample_ids[i] for i in index],
        is_mislabeled=None if dataset.is_mislabeled is None else dataset.is_mislabeled[index],
        true_labels=None if dataset.true_labels is None else dataset.true_labels[index],
        meta={**dataset.meta, "limit": limit},
    )
