"""Hugging Face `datasets` layouts of image datasets, read and written without the `datasets`
package: a Parquet file, and a zipped `save_to_disk` folder (Arrow IPC streams).

Both hold one row per sample with an ``image`` struct column (``bytes``: the encoded image,
``path``: its file name, informational), a ``label`` column (``ClassLabel`` indices whose names
come from the features metadata, or plain values), an optional ``id`` column (the sample ids;
the row index otherwise) and an optional ``is_mislabeled`` column.

- Parquet: the features are read from the schema metadata key ``huggingface`` (what `datasets`
  writes, ``{"info": {"features": ...}}``).
- ``save_to_disk``: ``state.json`` lists the ``.arrow`` files, ``dataset_info.json`` holds the
  features; at the zip's root or in its single top-level folder. A ``DatasetDict`` (a
  ``dataset_dict.json`` naming its splits, each split in its folder) is audited on its one
  split, or on ``train`` with ``test`` as the held-out test split.
"""

from __future__ import annotations

import io
import json
import posixpath
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from core.dataset import AuditDataset
from core.errors import DatasetError
from core.loaders.images import ImageBudget, decode_all, open_image
from core.loaders.limits import MAX_PARQUET_BYTES
from core.loaders.safe_zip import open_zip, read_member
from core.loaders.source import FileSource
from core.loaders.validation import as_text, check_class_count, make_dataset, parse_flags

IMAGE_COLUMN, LABEL_COLUMN, ID_COLUMN, FLAGS_COLUMN = "image", "label", "id", "is_mislabeled"
HF_METADATA_KEY = b"huggingface"
STATE_FILE, INFO_FILE, DICT_FILE = "state.json", "dataset_info.json", "dataset_dict.json"
ROW_GROUP_ROWS = 1000  # images encoded (and held) at a time by the writers


# --- recognising the layouts -------------------------------------------------------------------


def is_hf_image_schema(schema: pa.Schema) -> bool:
    """Whether a table holds images in the `datasets` image feature layout (``image.bytes``)."""
    index = schema.get_field_index(IMAGE_COLUMN)
    if index < 0:
        return False
    kind = schema.field(index).type
    return pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0


def is_hf_image_parquet(path: Path) -> bool:
    try:
        return is_hf_image_schema(pq.read_schema(path))
    except (pa.ArrowException, OSError, ValueError):
        return False  # not readable as Parquet: the tabular loader says why


def is_saved_dataset(member_names: list[str]) -> bool:
    """Whether a zip's members are a `save_to_disk` folder (a Dataset or a DatasetDict)."""
    return _saved_root(member_names) is not None


def _saved_root(names: list[str]) -> str | None:
    """The folder ("" or "top/") holding state.json or dataset_dict.json, at the root or one level down."""
    for marker in (DICT_FILE, STATE_FILE):
        for name in names:
            if posixpath.basename(name) == marker and name.count("/") <= 1:
                return name[: -len(marker)]
    return None


# --- reading -----------------------------------------------------------------------------------


def load_hf_parquet(source: FileSource) -> AuditDataset:
    where = source.path.name
    try:
        metadata = pq.read_metadata(source.path)
        size = sum(metadata.row_group(group).total_byte_size for group in range(metadata.num_row_groups))
        if size > MAX_PARQUET_BYTES:
            raise DatasetError(f"{where} holds {size} bytes of data uncompressed, more than the {MAX_PARQUET_BYTES} allowed")
        table = pq.read_table(source.path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DatasetError(f"{where} is not a readable Parquet file: {exc}") from None
    features = _metadata_features(table.schema.metadata, where)
    return _table_dataset(table, features, source, where, meta_format="hf-parquet")


def load_saved_dataset_zip(source: FileSource) -> AuditDataset:
    where = source.path.name
    with open_zip(source.path) as archive:
        files = {info.filename: info for info in archive.infolist() if not info.is_dir()}
        root = _saved_root(list(files))
        if root is None:
            raise DatasetError(f"{where} holds no {STATE_FILE} or {DICT_FILE} (a datasets save_to_disk folder)")
        splits = _splits(archive, files, root, where)
        main = "train" if "train" in splits else next(iter(splits))
        if len(splits) > 1 and main != "train":
            raise DatasetError(f"{where}: a DatasetDict of several splits needs a 'train' split (has {', '.join(splits)})")
        dataset = _split_dataset(archive, files, splits[main], source, f"{where}:{main}" if len(splits) > 1 else where)
        if "test" in splits and main == "train":
            # The test split stays in memory: the source's sink takes the audited split only.
            test = _split_dataset(archive, files, splits["test"], replace(source, sink=None), f"{where}:test")
            # Only a test split of the same classes (ClassLabel names) measures the trained model.
            dataset.test = test if test.class_names == dataset.class_names else None
    return dataset


def _splits(archive: zipfile.ZipFile, files: dict, root: str, where: str) -> dict[str, str]:
    """split name -> the folder of its state.json; one unnamed split for a plain Dataset."""
    if root + DICT_FILE not in files:
        return {"": root}
    listed = _json_member(archive, files, root + DICT_FILE, where).get("splits")
    if not isinstance(listed, list) or not listed or not all(isinstance(s, str) for s in listed):
        raise DatasetError(f"{where}: {DICT_FILE} names no splits")
    return {split: f"{root}{split}/" for split in listed}


def _split_dataset(archive: zipfile.ZipFile, files: dict, folder: str, source: FileSource, where: str) -> AuditDataset:
    state = _json_member(archive, files, folder + STATE_FILE, where)
    data_files = state.get("_data_files")
    if not isinstance(data_files, list) or not data_files:
        raise DatasetError(f"{where}: {STATE_FILE} lists no _data_files")
    names = []
    for entry in data_files:
        name = folder + str(entry.get("filename", "")) if isinstance(entry, dict) else ""
        if name not in files:
            raise DatasetError(f"{where}: data file {name!r} named in {STATE_FILE} is not in the archive")
        names.append(name)
    # The arrow files are read into memory whole: together they get the budget of a Parquet file's data.
    size = sum(files[name].file_size for name in names)
    if size > MAX_PARQUET_BYTES:
        raise DatasetError(f"{where}: the arrow files expand to {size} bytes, more than the {MAX_PARQUET_BYTES} allowed")
    tables = [
        _read_arrow(read_member(archive, files[name], where, max_bytes=MAX_PARQUET_BYTES, what="arrow file"), f"{where}:{name}")
        for name in names
    ]
    try:
        table = pa.concat_tables(tables)
    except pa.ArrowException as exc:
        raise DatasetError(f"{where}: the arrow files do not share one schema: {exc}") from None
    info = _json_member(archive, files, folder + INFO_FILE, where) if folder + INFO_FILE in files else {}
    features = info.get("features") if isinstance(info.get("features"), dict) else None
    return _table_dataset(table, features, source, where, meta_format="hf-save-to-disk")


def _read_arrow(data: bytes, where: str) -> pa.Table:
    """An Arrow IPC stream (what `datasets` writes), or an Arrow IPC file."""
    for opener in (pa.ipc.open_stream, pa.ipc.open_file):
        try:
            return opener(pa.BufferReader(data)).read_all()
        except (pa.ArrowException, OSError, ValueError):
            continue
    raise DatasetError(f"{where} is not a readable Arrow IPC stream or file")


def _json_member(archive: zipfile.ZipFile, files: dict, name: str, where: str) -> dict:
    if name not in files:
        raise DatasetError(f"{where}: {name!r} is missing")
    try:
        value = json.loads(read_member(archive, files[name], where))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{where}: {name!r} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DatasetError(f"{where}: {name!r} is not a JSON object")
    return value


def _metadata_features(metadata: dict | None, where: str) -> dict | None:
    raw = (metadata or {}).get(HF_METADATA_KEY)
    if raw is None:
        return None
    try:
        features = json.loads(raw).get("info", {}).get("features")
    except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        raise DatasetError(f"{where}: its 'huggingface' schema metadata is not valid JSON") from None
    return features if isinstance(features, dict) else None


def _label_names(features: dict | None) -> list[str] | None:
    label = (features or {}).get(LABEL_COLUMN)
    if isinstance(label, dict) and label.get("_type") == "ClassLabel" and isinstance(label.get("names"), list):
        return [str(name) for name in label["names"]]
    return None


def _table_dataset(table: pa.Table, features: dict | None, source: FileSource, where: str, *, meta_format: str) -> AuditDataset:
    if not is_hf_image_schema(table.schema):
        raise DatasetError(f"{where} has no '{IMAGE_COLUMN}' column of the datasets Image layout (a struct with bytes)")
    if LABEL_COLUMN not in table.column_names:
        raise DatasetError(f"{where} lacks column {LABEL_COLUMN} (found: {', '.join(table.column_names[:10])})")
    x = _decode_images(table.column(IMAGE_COLUMN).combine_chunks(), where, source)
    labels = table.column(LABEL_COLUMN).to_numpy(zero_copy_only=False)
    names = _label_names(features)
    if names is not None:
        _check_class_indices(labels, names, where)
    ids = (
        [as_text(v, f"{where} row {row}", "id") for row, v in enumerate(table.column(ID_COLUMN).to_pylist())]
        if ID_COLUMN in table.column_names
        else [str(i) for i in range(len(labels))]
    )
    flags = None
    if FLAGS_COLUMN in table.column_names:
        flags = parse_flags(table.column(FLAGS_COLUMN).to_numpy(zero_copy_only=False), f"{where}:{FLAGS_COLUMN}")
    return make_dataset(
        name=source.name, modality="image", x=x, labels=labels,
        sample_ids=ids, flags=flags, where=where, meta={"source": str(source.path), "format": meta_format},
        class_names=names,
    )  # fmt: skip


def _check_class_indices(labels: np.ndarray, names: list[str], where: str) -> None:
    check_class_count(names, where)
    if labels.dtype.kind not in "iu" or (len(labels) and (labels.min() < 0 or labels.max() >= len(names))):
        found = f"{labels.min()}..{labels.max()}" if labels.dtype.kind in "iuf" and len(labels) else str(labels.dtype)
        raise DatasetError(f"{where}: ClassLabel labels must be class indices 0..{len(names) - 1}, found {found}")


def _decode_images(column: pa.StructArray, where: str, source: FileSource) -> np.ndarray:
    """Each row's image, its size read from the header first, so that the budgets (one image's
    pixels, `max_pixels` and, when they are held in memory, the decoded bytes of all of them)
    stop the load before an image over them is decoded."""
    encoded = column.field("bytes").to_pylist()
    paths = column.field("path").to_pylist() if column.type.get_field_index("path") >= 0 else [None] * len(encoded)
    budget = ImageBudget(where, source)

    def opened(row: int) -> tuple[Image.Image, str]:
        place = f"{where} row {row}"
        if encoded[row] is None:
            shown = f" (path {paths[row]!r} only)" if paths[row] else ""
            raise DatasetError(f"{place}: the image has no bytes{shown}; embed the image bytes in the file")
        return open_image(encoded[row], place), place

    def check(row: int, image: Image.Image) -> None:
        budget.check(image, f"{where} row {row}", f"row {row}")

    return decode_all(len(encoded), opened, source, check)


# --- writing -----------------------------------------------------------------------------------


def hf_features(class_names: list[str]) -> dict:
    """The `datasets` features of what `write_hf_parquet` writes."""
    return {
        IMAGE_COLUMN: {"_type": "Image"},
        LABEL_COLUMN: {"names": list(class_names), "_type": "ClassLabel"},
        ID_COLUMN: {"dtype": "string", "_type": "Value"},
    }


def hf_image_table(dataset: AuditDataset, start: int = 0, stop: int | None = None) -> pa.Table:
    """Samples `start:stop` of the dataset (images as PNG, labels, ids) as a table in the
    `datasets` layout, with the features in its schema metadata."""
    if dataset.modality != "image":
        raise DatasetError(f"{dataset.name} holds {dataset.modality} data; the Hugging Face image layout needs images")
    stop = len(dataset) if stop is None else min(stop, len(dataset))
    images = pa.StructArray.from_arrays(
        [pa.array([_png(sample) for sample in dataset.x[start:stop]], type=pa.binary()),
         pa.nulls(stop - start, type=pa.string())],
        names=["bytes", "path"],
    )  # fmt: skip
    table = pa.table(
        {
            IMAGE_COLUMN: images,
            LABEL_COLUMN: pa.array(np.asarray(dataset.y[start:stop], dtype=np.int64)),
            ID_COLUMN: pa.array(dataset.sample_ids[start:stop], type=pa.string()),
        }
    )
    metadata = {HF_METADATA_KEY: json.dumps({"info": {"features": hf_features(dataset.class_names)}}).encode()}
    return table.replace_schema_metadata(metadata)


def write_hf_parquet(dataset: AuditDataset, path_or_file: str | Path | BinaryIO, row_group_rows: int = ROW_GROUP_ROWS) -> None:
    """Write an image dataset (e.g. a corrected dataset version) as a Parquet file that
    `datasets.load_dataset("parquet", ...)` and `load_hf_parquet` read back: ``image`` {bytes: PNG,
    path: null}, ``label`` (ClassLabel indices into the dataset's class names), ``id``. Images are
    encoded one row group at a time."""
    where = str(path_or_file) if isinstance(path_or_file, Path) else path_or_file
    schema = hf_image_table(dataset, 0, 0).schema
    with pq.ParquetWriter(where, schema) as writer:
        for start in range(0, len(dataset), row_group_rows):
            writer.write_table(hf_image_table(dataset, start, start + row_group_rows))


def hf_parquet_chunks(dataset: AuditDataset, row_group_rows: int = ROW_GROUP_ROWS) -> Iterator[bytes]:
    """What `write_hf_parquet` writes, as chunks of bytes produced row group by row group (for a
    streamed download: only one row group's images are held in memory)."""
    sink = _Sink()
    schema = hf_image_table(dataset, 0, 0).schema
    with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema) as writer:
        for start in range(0, len(dataset), row_group_rows):
            writer.write_table(hf_image_table(dataset, start, start + row_group_rows))
            yield sink.take()
    yield sink.take()


class _Sink:
    """A write-only stream whose bytes are taken out as they are written."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0
        self.closed = False

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self._chunks = b"".join(self._chunks), []
        return data


def _png(sample: np.ndarray) -> bytes:
    """One uint8 [C, H, W] image as PNG bytes."""
    pixels = sample[0] if sample.shape[0] == 1 else sample.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()
