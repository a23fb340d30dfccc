"""Which loader reads a source: a built-in name, else a file by its suffix, else by its content
(zip, npz or parquet magic bytes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from core.dataset import AuditDataset, Modality
from core.errors import DatasetError
from core.loaders.builtin_datasets import load_digits, load_fashion_mnist
from core.loaders.hf_parquet import is_hf_image_parquet, is_saved_dataset, load_hf_parquet, load_saved_dataset_zip
from core.loaders.image_zip import load_image_zip
from core.loaders.npz import load_npz
from core.loaders.safe_zip import open_zip_index
from core.loaders.source import FileSource
from core.loaders.tabular import load_csv, load_parquet, load_tsv
from core.loaders.timeseries import TIMESERIES_SUFFIXES, requested_modality
from core.sample_store import SinkFactory

BUILTIN_LOADERS: dict[str, Callable[..., AuditDataset]] = {"digits": load_digits, "fashion-mnist": load_fashion_mnist}
BUILTINS = tuple(BUILTIN_LOADERS)
# Built-ins read from a directory that "NAME:DIR" may name.
DIRECTORY_BUILTINS = ("fashion-mnist",)


def _load_zip(source: FileSource) -> AuditDataset:
    """A zipped `datasets` save_to_disk folder, else a zip of images (its member list, parsed
    once, handed to the image loader)."""
    archive = open_zip_index(source.path)
    try:
        saved = is_saved_dataset(archive.names)
    except BaseException:
        archive.close()
        raise
    if saved:
        archive.close()
        return load_saved_dataset_zip(source)
    return load_image_zip(source, archive)


def _load_any_parquet(source: FileSource) -> AuditDataset:
    """A Parquet file of the `datasets` image layout (an `image` struct column), else a table."""
    return (load_hf_parquet if is_hf_image_parquet(source.path) else load_parquet)(source)


FILE_LOADERS: dict[str, Callable[[FileSource], AuditDataset]] = {
    ".zip": _load_zip,
    ".npz": load_npz,
    ".csv": load_csv,
    ".tsv": load_tsv,
    ".parquet": _load_any_parquet,
    ".pq": _load_any_parquet,
}


def load_source(
    source: str | Path, *, image_size: int | None, max_pixels: int, modality: Modality | None,
    on_progress: Callable[[float], None] | None = None,
    sink: SinkFactory | None = None,
) -> AuditDataset:
    """`source` loaded as the built-in of that name, else as a file; a bare name that is neither
    is an unknown built-in."""
    text = str(source)
    name, _, directory = text.partition(":")
    if name in BUILTIN_LOADERS and not directory:
        return BUILTIN_LOADERS[name](image_size)
    if name in DIRECTORY_BUILTINS:
        return BUILTIN_LOADERS[name](image_size, directory)
    if not Path(text).exists() and not re.search(r"[./\\]", text):
        raise DatasetError(f"unknown built-in dataset {text!r}; built-ins are {', '.join(BUILTINS)}")
    return _load_file(Path(source), image_size, max_pixels, modality, on_progress, sink)


def _load_file(
    path: Path, image_size: int | None, max_pixels: int, modality: Modality | None,
    on_progress: Callable[[float], None] | None,
    sink: SinkFactory | None = None,
) -> AuditDataset:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist or is not a file")
    source = FileSource(
        path=path,
        name=_dataset_name(path),
        image_size=image_size,
        max_pixels=max_pixels,
        modality=requested_modality(path, modality),
        on_progress=on_progress,
        sink=sink,
    )
    return FILE_LOADERS[_format_of(path)](source)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    return suffix if suffix in FILE_LOADERS else _sniff_format(path, suffix)


def _sniff_format(path: Path, suffix: str) -> str:
    with path.open("rb") as handle:
        magic = handle.read(8)
    if magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        with open_zip_index(path) as archive:
            names = archive.names
            return ".npz" if names and all(n.endswith(".npy") for n in names) else ".zip"
    if magic.startswith(b"PAR1"):
        return ".parquet"
    if magic.startswith(b"\x93NUMPY"):
        raise DatasetError(f"{path.name} is a single .npy array; save x and y together with numpy.savez")
    raise DatasetError(
        f"{path.name}: unrecognised format (suffix {suffix or 'none'!r}); expected .zip, .npz, "
        f".csv, .tsv, .parquet or a built-in name ({', '.join(BUILTINS)})"
    )


def _dataset_name(path: Path) -> str:
    """The file name less its format suffix (``beats.ts.csv`` -> ``beats``), or whole when that leaves nothing."""
    name = path.name
    for suffix in (*TIMESERIES_SUFFIXES, *FILE_LOADERS):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name
