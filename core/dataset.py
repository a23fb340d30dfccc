"""The dataset every audit works on, whatever file format it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from core.errors import DatasetError
from core.modality import Modality


@dataclass
class AuditDataset:
    """Samples, their given labels and whatever ground truth is known.

    x: image  -> uint8 [N, C, H, W] (all images resized to one size at load time)
       tabular -> float32 [N, F]
       timeseries -> float32 [N, C, T]
       in memory, or a version's shard memory-mapped (`core.sample_store`): training then reads
       its batches from the file (`core.engine.Inputs`), never the whole of it.
    y: int64 [N], given (possibly noisy) labels, indices into `class_names`.
    sample_ids: N stable, unique strings (user-given, row index, or content hash).
    is_mislabeled: optional bool [N], known flags (True = the given label is wrong).
    true_labels: optional int64 [N], the clean labels when noise was injected.
    test: optional held-out split, used only to report the trained model's accuracy/AUROC.
    """

    name: str
    modality: Modality
    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    sample_ids: list[str]
    is_mislabeled: np.ndarray | None = None
    true_labels: np.ndarray | None = None
    test: AuditDataset | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def subset(self, index: np.ndarray) -> AuditDataset:
        """The samples at `index` (same classes; the test split is kept)."""
        index = np.asarray(index)
        return AuditDataset(
            name=self.name,
            modality=self.modality,
            x=self.x[index],
            y=self.y[index],
            class_names=self.class_names,
            sample_ids=[self.sample_ids[i] for i in index],
            is_mislabeled=None if self.is_mislabeled is None else self.is_mislabeled[index],
            true_labels=None if self.true_labels is None else self.true_labels[index],
            test=self.test,
            meta=dict(self.meta),
        )


def trusted_set(dataset: AuditDataset, labels_by_id: dict[str, str]) -> dict[int, int]:
    """A trusted set by sample index, {index: class index}, from trusted labels by sample id.

    A label is a class name of the dataset or, when it is no class name, a class index (as
    `lilaw-audit audit` shows them: class names, or indices for unnamed classes). Unknown sample
    ids or labels raise a DatasetError naming (the first few of) them."""
    position = {sample_id: i for i, sample_id in enumerate(dataset.sample_ids)}
    by_name = {name: c for c, name in enumerate(dataset.class_names)}
    unknown = [sample_id for sample_id in labels_by_id if sample_id not in position]
    if unknown:
        raise DatasetError(f"{len(unknown)} trusted sample ids are not in dataset {dataset.name!r}: {_first(unknown)}")
    trusted, bad = {}, []
    for sample_id, label in labels_by_id.items():
        label = str(label).strip()
        if label in by_name:
            trusted[position[sample_id]] = by_name[label]
        elif label.lstrip("-").isdigit() and 0 <= int(label) < dataset.num_classes:
            trusted[position[sample_id]] = int(label)
        else:
            bad.append(f"{sample_id}: {label!r}")
    if bad:
        raise DatasetError(
            f"{len(bad)} trusted labels are neither a class name nor a class index of {dataset.name!r}: {_first(bad)}"
        )
    return trusted


def _first(items: list[str], shown: int = 5) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def content_hashes(x: np.ndarray) -> list[str]:
    """The sha256 of every sample of `x` as loaded (its dtype, shape and bytes): equal for exact
    duplicates, whatever their ids."""
    header = f"{x.dtype.str}{x.shape[1:]}".encode()
    return [hashlib.sha256(header + np.ascontiguousarray(sample).tobytes()).hexdigest() for sample in x]
