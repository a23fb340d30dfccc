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

`registry` picks the loader; each format has its module (`image_zip`, `npz`, `tabular`,
`timeseries`, `builtin_datasets`), sharing `safe_zip`, `images` and `validation`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from core.dataset import AuditDataset, Modality
from core.errors import ConfigError, DatasetError
from core.loaders.registry import BUILTINS, load_source
from core.loaders.validation import FALSE_TEXTS, TRUE_TEXTS
from core.noise import stratified_choice
from core.sample_store import SinkFactory

__all__ = ["BUILTINS", "FALSE_TEXTS", "TRUE_TEXTS", "load_dataset"]

MODALITIES = ("image", "tabular", "timeseries")
SUBSET_SEED = 0


def load_dataset(
    source: str | Path,
    *,
    image_size: int | None = None,
    max_pixels: int = 50_000_000,
    limit: int | None = None,
    modality: Modality | None = None,
    on_progress: Callable[[float], None] | None = None,
    sink: SinkFactory | None = None,
) -> AuditDataset:
    """Load `source` (a file path or a built-in name) as an `AuditDataset`; `on_progress` is
    told the fraction read so far by the formats that decode sample by sample (images), which
    decode into `sink` (`core.sample_store`; default: memory) one image at a time."""
    _check_options(image_size, max_pixels, limit, modality)
    dataset = load_source(
        source, image_size=image_size, max_pixels=max_pixels, modality=modality, on_progress=on_progress, sink=sink
    )
    if modality is not None and dataset.modality != modality:
        raise DatasetError(f"{dataset.name} holds {dataset.modality} data, not {modality}")
    return dataset if limit is None else _subset(dataset, limit)


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
