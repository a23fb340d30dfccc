"""A dataset version downloaded as a file, by default in the format its dataset was uploaded in,
so that the corrected dataset (the version `versions.apply_relabels` made) goes back to where it
came from and uploads again with the same sample ids.

The upload a version comes from is found through its parents (`DatasetVersion.parent_version`);
its format decides the layout (`core.loaders.writers`): a class-folder zip gives a class-folder
zip with every image in its corrected class's folder, a zip with labels.csv the same zip with a
corrected labels.csv, a table a table (CSV, TSV as TSV, Parquet as CSV) with a corrected label
column, a Hugging Face image dataset a Hugging Face Parquet file (streamed a row group at a
time), an .npz or a built-in an .npz. An image is the uploaded file itself where that upload
holds it (appended samples are PNGs of their pixels); a table row keeps its uploaded values.
A version whose samples are segments of shards (appends, relabels with removals) reads them from
the shards, a chunk of rows at a time, with explicit reads: a download never holds the version's
samples whole (except a version without shards, read from its blob). A table upload's values are
read back from its file a chunk of rows at a time too (`UploadedRows`). Everything is read from
the database before the file is streamed; the stream reads only files.
"""

from __future__ import annotations

import pickle
import posixpath
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

import numpy as np
from sqlalchemy import and_, select, text
from sqlalchemy.orm import Session, aliased

from core.dataset import AuditDataset
from core.errors import DatasetError
from core.loaders import writers
from core.loaders.hf_parquet import hf_parquet_chunks
from core.loaders.safe_zip import open_zip, read_member
from core.loaders.tabular import UploadedValues, uploaded_values
from core.services import InvalidParameterError
from core.services.blobs import dataset_source, version_file_errors
from core.services.datasets import get_dataset, get_version
from core.services.version_samples import read_explicitly, samples_dataset
from core.settings import Settings
from core.store.models import DatasetVersion, Sample

ZIP_LAYOUTS = ("imagefolder", "images+labels.csv")
TABLE_FORMATS = ("csv", "tsv", "parquet")
HF_FORMATS = ("hf-parquet", "hf-save-to-disk")  # written back as a Hugging Face image Parquet
FILE_ROWS_FETCHED = 10_000  # sample rows fetched at a time when matching a version's samples to the upload's


class DownloadFormat(StrEnum):
    ORIGINAL = "original"  # the format the dataset was uploaded in
    NPZ = "npz"
    CSV = "csv"


@dataclass(frozen=True)
class DatasetFile:
    filename: str
    media_type: str
    chunks: Iterator[bytes]


def download_version(
    session: Session,
    settings: Settings,
    owner_id: int,
    dataset_id: int,
    version: int | None = None,
    fmt: DownloadFormat = DownloadFormat.ORIGINAL,
) -> DatasetFile:
    """The version (default: the latest) as a file of `fmt`."""
    chosen = get_version(session, owner_id, dataset_id, version)
    upload = _upload_of(session, owner_id, chosen)
    dataset = _as_stored(session, chosen, _samples_of(chosen, settings))
    name = f"{get_dataset(session, owner_id, dataset_id).name}-v{chosen.version}"
    layout = upload.format if fmt is DownloadFormat.ORIGINAL else fmt.value
    if layout in ZIP_LAYOUTS:
        originals = _original_images(session, upload, settings)
        write = writers.class_folder_zip if layout == "imagefolder" else writers.labels_csv_zip
        return DatasetFile(f"{name}.zip", "application/zip", _streamed_images(write, dataset, originals))
    if layout in HF_FORMATS:
        return DatasetFile(f"{name}.parquet", "application/vnd.apache.parquet", hf_parquet_chunks(dataset))
    if layout in TABLE_FORMATS:
        return _table(session, settings, chosen, dataset, upload, name, sep="\t" if layout == "tsv" else ",")
    return DatasetFile(f"{name}.npz", "application/octet-stream", writers.npz_file(dataset))


def _upload_of(session: Session, owner_id: int, version: DatasetVersion) -> DatasetVersion:
    """The uploaded version `version` was made from (appends, relabels), or itself."""
    while version.parent_version is not None:
        version = get_version(session, owner_id, version.dataset_id, version.parent_version)
    return version


def _samples_of(version: DatasetVersion, settings: Settings) -> AuditDataset:
    """The version's samples: its shards' rows, read by the writers a chunk at a time (with explicit
    reads, not through a memory map), where it has shards; else its blob, as loaded."""
    loaded = samples_dataset(version, settings)
    return replace(loaded, x=read_explicitly(loaded.x))


def _as_stored(session: Session, version: DatasetVersion, loaded: AuditDataset) -> AuditDataset:
    """`loaded` with the ids, labels and (where all are known) flags the database holds for it."""
    rows = session.execute(
        select(Sample.sample_id, Sample.label, Sample.is_mislabeled)
        .where(Sample.dataset_version_id == version.id)
        .order_by(Sample.sample_index)
    ).all()
    flags = [flag for _, _, flag in rows]
    return replace(
        loaded,
        sample_ids=[sample_id for sample_id, _, _ in rows],
        y=np.array([label for _, label, _ in rows], dtype=np.int64),
        class_names=list(version.class_names),
        is_mislabeled=None if any(flag is None for flag in flags) else np.array(flags, dtype=bool),
        test=None,
    )


def _file_ids(session: Session, upload: DatasetVersion) -> dict[str, str]:
    """{sample id: the sample's id in the uploaded file} of the upload's samples."""
    rows = session.execute(
        select(Sample.sample_id, Sample.source_path).where(Sample.dataset_version_id == upload.id)
    ).all()
    return {sample_id: source_path or sample_id for sample_id, source_path in rows}


@dataclass(frozen=True)
class _OriginalImages:
    zip_path: Path
    members: dict[str, str]  # sample id -> member of the uploaded zip


def _original_images(session: Session, upload: DatasetVersion, settings: Settings) -> _OriginalImages | None:
    if upload.format not in ZIP_LAYOUTS:
        return None
    return _OriginalImages(Path(dataset_source(upload, settings)), _file_ids(session, upload))


def _streamed_images(write, dataset: AuditDataset, originals: _OriginalImages | None) -> Iterator[bytes]:
    if originals is None:
        yield from write(dataset, lambda index: None)
        return
    with open_zip(originals.zip_path) as archive:
        where = posixpath.basename(str(originals.zip_path))

        def original(index: int) -> bytes | None:
            member = originals.members.get(dataset.sample_ids[index])
            try:
                info = archive.getinfo(member)
            except KeyError:  # not in the upload (appended), or no member of that name
                return None
            return read_member(archive, info, where)

        yield from write(dataset, original)


def _table(
    session: Session, settings: Settings, version: DatasetVersion, dataset: AuditDataset, upload: DatasetVersion,
    name: str, sep: str,
) -> DatasetFile:
    if dataset.x.ndim != 2 and not (dataset.x.ndim == 3 and dataset.x.shape[1] == 1):
        raise InvalidParameterError(
            f"{dataset.modality} samples of shape {dataset.input_shape} do not fit a table; download them as npz"
        )
    suffix = (".ts" if dataset.modality == "timeseries" else "") + (".tsv" if sep == "\t" else ".csv")
    media_type = "text/tab-separated-values" if sep == "\t" else "text/csv"
    if upload.format not in TABLE_FORMATS:
        names = [f"f{i}" for i in range(int(np.prod(dataset.input_shape)))]
        chunks = writers.table_file(dataset, names, lambda index: None, sep=sep)
        return DatasetFile(f"{name}{suffix}", media_type, chunks)
    with version_file_errors(upload, settings):
        values = uploaded_values(Path(dataset_source(upload, settings)), upload.format)
    rows = UploadedRows(values, _file_rows(session, version, upload, len(dataset)), settings.data_dir,
                         f"the file of dataset version {upload.version}")  # fmt: skip
    return DatasetFile(f"{name}{suffix}", media_type, _streamed_table(dataset, values.feature_names, rows, sep))


def _streamed_table(dataset: AuditDataset, feature_names: list[str], rows: UploadedRows, sep: str) -> Iterator[bytes]:
    with rows:
        yield from writers.table_file(dataset, feature_names, rows, sep=sep)


def _file_rows(session: Session, version: DatasetVersion, upload: DatasetVersion, count: int) -> np.ndarray:
    """The upload's file row of each of the version's `count` samples, in their order (-1 for a sample the
    upload does not hold: appended from another file). The upload's sample rows are its file's rows in
    order (a sample's `sample_index` in its upload is its row), matched to the version's by sample id."""
    if version.id == upload.id:
        return np.arange(count, dtype=np.int64)
    if session.get_bind().dialect.name == "postgresql":
        # A cursor's plan is chosen for its first rows by default, which on samples just inserted
        # (no statistics yet) is a scan of all the upload's rows for each of the version's.
        session.execute(text("SET LOCAL cursor_tuple_fraction = 1.0"))
    uploaded = aliased(Sample)
    query = (
        select(uploaded.sample_index)
        .select_from(Sample)
        .outerjoin(uploaded, and_(uploaded.dataset_version_id == upload.id, uploaded.sample_id == Sample.sample_id))
        .where(Sample.dataset_version_id == version.id)
        .order_by(Sample.sample_index)
        .execution_options(yield_per=FILE_ROWS_FETCHED)
    )
    rows = session.scalars(query)
    return np.fromiter((-1 if row is None else row for row in rows), dtype=np.int64, count=count)


class UploadedRows:
    """The uploaded values of the version's sample i (None where the upload does not hold it),
    asked for with i = 0, 1, 2... inside `with`. Where the version holds the upload's rows in the
    file's order (as uploads, relabels and appends make them), they are read with a forward cursor
    through the file, a chunk of rows at a time; otherwise every row is first written to a
    temporary file under `spill_dir` (its values pickled) and read back from there by its offset.
    `where` names the file in errors."""

    def __init__(self, values: UploadedValues, file_rows: np.ndarray, spill_dir: Path, where: str):
        self.values, self.file_rows, self.spill_dir, self.where = values, file_rows, spill_dir, where
        held = file_rows[file_rows >= 0]
        self.in_file_order = bool(np.all(held[1:] > held[:-1]))
        self._chunks: Iterator[list[list]] | None = None
        self._chunk: list[list] = []
        self._start = 0  # the file row of self._chunk[0]
        self._spill = None  # the temporary file of every row's pickled values, out of the file's order
        self._offsets: np.ndarray | None = None  # where row r's are in it: offsets[r] to offsets[r + 1]

    def __enter__(self) -> UploadedRows:
        self._chunks = self.values.chunks()
        if not self.in_file_order:
            self._spill_rows()
        return self

    def __exit__(self, *exc_info) -> None:
        self._chunks.close()
        if self._spill is not None:
            self._spill.close()

    def __call__(self, index: int) -> list | None:
        row = int(self.file_rows[index])
        if row < 0:
            return None
        if self._spill is not None:
            if row + 1 >= len(self._offsets):
                raise self._missing(row)
            self._spill.seek(int(self._offsets[row]))
            return pickle.loads(self._spill.read(int(self._offsets[row + 1] - self._offsets[row])))
        while row >= self._start + len(self._chunk):
            self._start += len(self._chunk)
            self._chunk = next(self._chunks, None)
            if self._chunk is None:
                raise self._missing(row)
        return self._chunk[row - self._start]

    def _missing(self, row: int) -> DatasetError:
        return DatasetError(f"{self.where} has no data row {row + 1}, which its samples have")

    def _spill_rows(self) -> None:
        self._spill = tempfile.TemporaryFile(dir=self.spill_dir)
        offsets = array("q", [0])
        for chunk in self._chunks:
            for values in chunk:
                offsets.append(offsets[-1] + self._spill.write(pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)))
        self._offsets = np.frombuffer(offsets, dtype=np.int64)
