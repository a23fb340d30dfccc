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
samples whole (except a table uploaded as one, whose uploaded values are read back, and a
version without shards, read from its blob). Everything is read from the database before the file
is streamed; the stream reads only files.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.dataset import AuditDataset
from core.errors import DatasetError
from core.loaders import load_dataset, writers
from core.loaders.hf_parquet import hf_parquet_chunks
from core.loaders.safe_zip import open_zip, read_member
from core.services import InvalidParameterError
from core.services.blobs import dataset_source, version_file_errors
from core.services.datasets import get_dataset, get_version
from core.services.version_samples import read_explicitly, samples_dataset
from core.settings import Settings
from core.store.models import DatasetVersion, Sample

ZIP_LAYOUTS = ("imagefolder", "images+labels.csv")
TABLE_FORMATS = ("csv", "tsv", "parquet")
HF_FORMATS = ("hf-parquet", "hf-save-to-disk")  # written back as a Hugging Face image Parquet
TABLE_COLUMNS = ("label", "sample_id", "is_mislabeled")


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
        return _table(session, settings, dataset, upload, name, sep="\t" if layout == "tsv" else ",")
    return DatasetFile(f"{name}.npz", "application/octet-stream", writers.npz_file(dataset))


def _upload_of(session: Session, owner_id: int, version: DatasetVersion) -> DatasetVersion:
    """The uploaded version `version` was made from (appends, relabels), or itself."""
    while version.parent_version is not None:
        version = get_version(session, owner_id, version.dataset_id, version.parent_version)
    return version


def _load(version: DatasetVersion, settings: Settings) -> AuditDataset:
    with version_file_errors(version, settings):
        source = dataset_source(version, settings)
        return load_dataset(source, modality=version.modality, max_pixels=settings.max_decoded_pixels)


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
    session: Session, settings: Settings, dataset: AuditDataset, upload: DatasetVersion, name: str, sep: str
) -> DatasetFile:
    if dataset.x.ndim != 2 and not (dataset.x.ndim == 3 and dataset.x.shape[1] == 1):
        raise InvalidParameterError(
            f"{dataset.modality} samples of shape {dataset.input_shape} do not fit a table; download them as npz"
        )
    width = int(np.prod(dataset.input_shape))
    feature_names, rows = [f"f{i}" for i in range(width)], {}
    if upload.format in TABLE_FORMATS:
        feature_names, rows = _uploaded_rows(session, settings, upload)
    suffix = (".ts" if dataset.modality == "timeseries" else "") + (".tsv" if sep == "\t" else ".csv")
    media_type = "text/tab-separated-values" if sep == "\t" else "text/csv"
    chunks = writers.table_file(dataset, feature_names, lambda index: rows.get(dataset.sample_ids[index]), sep=sep)
    return DatasetFile(f"{name}{suffix}", media_type, chunks)


def _uploaded_rows(session: Session, settings: Settings, upload: DatasetVersion) -> tuple[list[str], dict[str, list]]:
    """The uploaded table's feature columns, and each sample's feature values as uploaded (text
    for CSV and TSV, so that they are written back digit for digit), by sample id."""
    path = dataset_source(upload, settings)
    loaded = _load(upload, settings)  # the file's ids, in row order, as the loader gives them
    try:
        if upload.format == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if upload.format == "tsv" else ",", dtype=str, keep_default_na=False)
    except (ValueError, OSError) as error:
        raise DatasetError(f"the file of dataset version {upload.version} cannot be read again: {error}") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    features = [column for column in frame.columns if column not in TABLE_COLUMNS]
    values = frame[features].to_numpy(dtype=object).tolist()
    row_of = {file_id: row for row, file_id in enumerate(loaded.sample_ids)}
    file_ids = _file_ids(session, upload).items()
    return features, {sample_id: values[row_of[file_id]] for sample_id, file_id in file_ids if file_id in row_of}
