"""The in-memory dataset every audit works on, whatever file format it came from."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Modality = Literal["image", "tabular", "timeseries"]


@dataclass
class AuditDataset:
    """Samples, their given labels and whatever ground truth is known.

    x: image  -> uint8 [N, C, H, W] (all images resized to one size at load time)
       tabular -> float32 [N, F]
       timeseries -> float32 [N, C, T]
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


def content_hashes(x: np.ndarray) -> list[str]:
    """The sha256 of every sample of `x` as loaded (its dtype, shape and bytes): equal for exact
    duplicates, whatever their ids."""
    header = f"{x.dtype.str}{x.shape[1:]}".encode()
    return [hashlib.sha256(header + np.ascontiguousarray(sample).tobytes()).hexdigest() for sample in x]
