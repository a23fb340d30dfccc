"""Datasets written back out, streamed chunk by chunk, in the layouts the loaders read, so that a
downloaded dataset uploads again with the same sample ids:

- a zip of class folders: each image at its sample id with the class folder in it replaced by
  its (corrected) class's, a top-level folder above kept (``-1``, ``-2``... added where two
  would clash);
- a zip of images with a ``labels.csv`` (``file,label[,is_mislabeled]``) at the root, each image
  at its sample id;
- a table (CSV or TSV) with ``sample_id`` and ``label`` columns and the feature columns;
- an ``.npz`` with ``x``, ``y``, ``class_names``, ``sample_ids`` (and ``is_mislabeled``).

An image is written as the file it was uploaded as when its bytes are given, else encoded as a
PNG of its pixels as loaded. ``is_mislabeled`` is written only where every flag is known. Zips
are written to an unseekable sink, so nothing but the member being written is held in memory.
"""

from __future__ import annotations

import csv
import io
import posixpath
import zipfile
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from core.dataset import AuditDataset

LABELS_CSV = "labels.csv"
TABLE_CHUNK_ROWS = 5_000
# Already-compressed image files are stored as they are; CSV and arrays are deflated.
STORED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})

Originals = Callable[[int], bytes | None]  # the uploaded file of sample i, if known


def class_folder_zip(dataset: AuditDataset, original: Originals) -> Iterator[bytes]:
    """The images in class folders, named by the corrected labels."""
    sink, names = _Sink(), set()
    with zipfile.ZipFile(sink, "w") as archive:
        for index, sample_id in enumerate(dataset.sample_ids):
            label = dataset.class_names[int(dataset.y[index])]
            data, encoded = _image_bytes(dataset, index, original)
            name = _unique(_in_class_folder(sample_id, label, dataset.class_names), names, encoded)
            _write(archive, name, data)
            yield sink.take()
    yield sink.take()


def labels_csv_zip(dataset: AuditDataset, original: Originals) -> Iterator[bytes]:
    """The images at their sample ids and a labels.csv at the root with the corrected labels."""
    sink, names, rows = _Sink(), {LABELS_CSV}, []
    with zipfile.ZipFile(sink, "w") as archive:
        for index, sample_id in enumerate(dataset.sample_ids):
            data, encoded = _image_bytes(dataset, index, original)
            name = _unique(sample_id, names, encoded)
            _write(archive, name, data)
            rows.append((name, dataset.class_names[int(dataset.y[index])]))
            yield sink.take()
        flags = _known_flags(dataset)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["file", "label"] + ([] if flags is None else ["is_mislabeled"]))
        for index, (name, label) in enumerate(rows):
            writer.writerow([name, label] + ([] if flags is None else [str(bool(flags[index])).lower()]))
        _write(archive, LABELS_CSV, text.getvalue().encode())
    yield sink.take()


def npz_file(dataset: AuditDataset) -> Iterator[bytes]:
    """The arrays of an .npz the npz loader reads back with the same ids, labels and classes."""
    arrays = {
        "x": dataset.x,
        "y": dataset.y.astype(np.int64),
        "class_names": np.array(dataset.class_names),
        "sample_ids": np.array(dataset.sample_ids),
    }
    flags = _known_flags(dataset)
    if flags is not None:
        arrays["is_mislabeled"] = flags
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            yield sink.take()
    yield sink.take()


def table_file(
    dataset: AuditDataset,
    feature_names: Sequence[str],
    original_rows: Callable[[int], Sequence | None],
    *,
    sep: str = ",",
) -> Iterator[bytes]:
    """A table: sample_id, label, the features (a sample's uploaded row's values where
    `original_rows` gives them, else its values as loaded) and is_mislabeled."""
    flags = _known_flags(dataset)
    values = dataset.x.reshape(len(dataset), -1)
    text = io.StringIO()
    writer = csv.writer(text, delimiter=sep, lineterminator="\n")
    writer.writerow(["sample_id", "label", *feature_names] + ([] if flags is None else ["is_mislabeled"]))
    for index, sample_id in enumerate(dataset.sample_ids):
        row = original_rows(index)
        features = [float(value) for value in values[index]] if row is None else list(row)
        flag = [] if flags is None else [str(bool(flags[index])).lower()]
        writer.writerow([sample_id, dataset.class_names[int(dataset.y[index])], *features, *flag])
        if (index + 1) % TABLE_CHUNK_ROWS == 0:
            yield _drain(text)
    yield _drain(text)


def _image_bytes(dataset: AuditDataset, index: int, original: Originals) -> tuple[bytes, bool]:
    """The sample's uploaded file, or (encoded = True) a PNG of its pixels."""
    data = original(index)
    if data is not None:
        return data, False
    pixels = dataset.x[index]  # uint8 [C, H, W]
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else np.moveaxis(pixels, 0, -1))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue(), True


def _in_class_folder(sample_id: str, label: str, class_names: Sequence[str]) -> str:
    """The class-folder member path `sample_id` with its class folder replaced by `label`'s (a
    top-level folder above it kept); ``label/<file name>`` when it names no class folder."""
    parts = sample_id.split("/")
    classes = set(class_names)
    for position, part in enumerate(parts[:-1]):
        if part in classes:
            return "/".join([*parts[:position], label, *parts[position + 1 :]])
    return f"{label}/{parts[-1]}"


def _unique(name: str, taken: set[str], encoded: bool) -> str:
    stem, suffix = posixpath.splitext(name)
    if encoded:
        suffix = ".png"
    candidate, count = stem + suffix, 0
    while candidate in taken:
        count += 1
        candidate = f"{stem}-{count}{suffix}"
    taken.add(candidate)
    return candidate


def _write(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    stored = posixpath.splitext(name)[1].lower() in STORED_SUFFIXES
    archive.writestr(name, data, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)


def _known_flags(dataset: AuditDataset) -> np.ndarray | None:
    return None if dataset.is_mislabeled is None else dataset.is_mislabeled.astype(bool)


def _drain(text: io.StringIO) -> bytes:
    data = text.getvalue().encode()
    text.seek(0)
    text.truncate()
    return data


class _Sink:
    """A write-only stream (no tell or seek, so zipfile writes data descriptors) whose bytes are
    taken out as they are written."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data
