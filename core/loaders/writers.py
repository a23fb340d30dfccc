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
The samples (``dataset.x``: in memory, a memory map, or a version's segments of shards) are read
a chunk of rows at a time (`RowChunks`), never all at once.
"""

from __future__ import annotations

import csv
import io
import posixpath
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from core.dataset import AuditDataset

LABELS_CSV = "labels.csv"
TEXT_CHUNK_CHARS = 1024**2  # CSV text given out at a time
READ_CHUNK_BYTES = 4 * 1024**2  # samples read from `dataset.x` at a time
# Already-compressed image files are stored as they are; CSV and arrays are deflated.
STORED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp"})

Originals = Callable[[int], bytes | None]  # the uploaded file of sample i, if known


def class_folder_zip(dataset: AuditDataset, original: Originals) -> Iterator[bytes]:
    """The images in class folders, named by the corrected labels."""
    sink, names, samples = _Sink(), set(), RowChunks(dataset.x)
    with zipfile.ZipFile(sink, "w") as archive:
        for index, sample_id in enumerate(dataset.sample_ids):
            label = dataset.class_names[int(dataset.y[index])]
            data, encoded = _image_bytes(samples, index, original)
            name = _unique(_in_class_folder(sample_id, label, dataset.class_names), names, encoded)
            _write(archive, name, data)
            yield sink.take()
    yield sink.take()


def labels_csv_zip(dataset: AuditDataset, original: Originals) -> Iterator[bytes]:
    """The images at their sample ids and a labels.csv at the root with the corrected labels."""
    sink, names, rows, samples = _Sink(), {LABELS_CSV}, [], RowChunks(dataset.x)
    with zipfile.ZipFile(sink, "w") as archive:
        for index, sample_id in enumerate(dataset.sample_ids):
            data, encoded = _image_bytes(samples, index, original)
            name = _unique(sample_id, names, encoded)
            _write(archive, name, data)
            rows.append((name, dataset.class_names[int(dataset.y[index])]))
            yield sink.take()
        flags = _known_flags(dataset)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        with archive.open(_member_info(LABELS_CSV), "w") as member:
            writer.writerow(["file", "label"] + ([] if flags is None else ["is_mislabeled"]))
            for index, (name, label) in enumerate(rows):
                writer.writerow([name, label] + ([] if flags is None else [str(bool(flags[index])).lower()]))
                if text.tell() >= TEXT_CHUNK_CHARS:
                    member.write(_drain(text))
                    yield sink.take()
            member.write(_drain(text))
    yield sink.take()


def npz_file(dataset: AuditDataset) -> Iterator[bytes]:
    """The arrays of an .npz the npz loader reads back with the same ids, labels and classes; ``x``
    is written a chunk of rows at a time, the bytes `numpy.save` writes."""
    arrays = {
        "x": RowChunks(dataset.x),
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
                if isinstance(array, RowChunks):
                    for data in _npy_bytes(array):
                        member.write(data)
                        yield sink.take()
                else:
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
    samples = RowChunks(dataset.x)
    text = io.StringIO()
    writer = csv.writer(text, delimiter=sep, lineterminator="\n")
    writer.writerow(["sample_id", "label", *feature_names] + ([] if flags is None else ["is_mislabeled"]))
    for index, sample_id in enumerate(dataset.sample_ids):
        row = original_rows(index)
        features = [float(value) for value in samples[index].reshape(-1)] if row is None else list(row)
        flag = [] if flags is None else [str(bool(flags[index])).lower()]
        writer.writerow([sample_id, dataset.class_names[int(dataset.y[index])], *features, *flag])
        if text.tell() >= TEXT_CHUNK_CHARS:
            yield _drain(text)
    yield _drain(text)


class RowChunks:
    """The rows of `x` (anything with `len()`, `shape`, `dtype` and slicing: an array, a memory
    map, `core.sample_store.SegmentedRows`) read a chunk of `chunk_bytes` at a time: by index (the
    chunk holding it is read when it is not the one held), or chunk by chunk."""

    def __init__(self, x, chunk_bytes: int | None = None):
        self.x = x
        self.shape = tuple(int(n) for n in x.shape)
        self.dtype = np.dtype(x.dtype)
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.chunk_rows = max(1, (chunk_bytes or READ_CHUNK_BYTES) // max(1, row_bytes))
        self._start, self._chunk = -1, None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        start = index - index % self.chunk_rows
        if start != self._start:
            self._start, self._chunk = start, self._read(start)
        return self._chunk[index - start]

    def chunks(self) -> Iterator[np.ndarray]:
        for start in range(0, len(self), self.chunk_rows):
            yield self._read(start)

    def _read(self, start: int) -> np.ndarray:
        return np.ascontiguousarray(self.x[start : start + self.chunk_rows])


def _npy_bytes(rows: RowChunks) -> Iterator[bytes | memoryview]:
    """What `np.lib.format.write_array` writes for the array of `rows`: its header, then its rows a
    chunk at a time (each chunk's own bytes, not a copy)."""
    header, fields = io.BytesIO(), {"descr": np.lib.format.dtype_to_descr(rows.dtype), "fortran_order": False,
                                    "shape": rows.shape}  # fmt: skip
    try:
        np.lib.format.write_array_header_1_0(header, fields)
    except ValueError:  # a header too long for format 1.0, as `write_array` falls back
        np.lib.format.write_array_header_2_0(header, fields)
    yield header.getvalue()
    for chunk in rows.chunks():
        yield memoryview(chunk.reshape(-1)).cast("B")


def _image_bytes(samples: RowChunks, index: int, original: Originals) -> tuple[bytes, bool]:
    """The sample's uploaded file, or (encoded = True) a PNG of its pixels."""
    data = original(index)
    if data is not None:
        return data, False
    pixels = samples[index]  # uint8 [C, H, W]
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
    archive.writestr(name, data, compress_type=_compression(name))


def _member_info(name: str) -> zipfile.ZipInfo:
    """The member `ZipFile.writestr` would make for `name` (dated now, -rw-------), to be written
    a piece at a time through `ZipFile.open`."""
    info = zipfile.ZipInfo(name, date_time=time.localtime(time.time())[:6])
    info.compress_type = _compression(name)
    info.external_attr = 0o600 << 16
    return info


def _compression(name: str) -> int:
    stored = posixpath.splitext(name)[1].lower() in STORED_SUFFIXES
    return zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED


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
