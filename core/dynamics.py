"""Per-sample, per-epoch training dynamics: the arrays the engine hands out after every epoch.

One `EpochDynamics` holds one row per sample of the dataset (train and validation split alike),
ordered by `sample_index` (the sample's position in the dataset, 0..N-1). Train rows come from
the training forward pass of that epoch (the model as it was when the sample's batch was seen);
validation rows come from an out-of-sample forward pass at the end of the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

SPLIT_TRAIN = 0
SPLIT_VAL = 1
SPLIT_NAMES = {SPLIT_TRAIN: "train", SPLIT_VAL: "val"}

# Float fields, in the order they are stored and written.
FLOAT_FIELDS = ("w_alpha", "w_beta", "w_delta", "w", "loss", "p_label", "p_max", "margin", "el2n")
# Float fields that only some runs record: None where the run's weighting does not compute them
# (stored as NULL). fbr_agreement: FBR's per-sample agreement d_i (`core.fbr`), weighting="fbr".
OPTIONAL_FLOAT_FIELDS = ("fbr_agreement",)


@dataclass
class EpochDynamics:
    epoch: int  # 1-based
    sample_index: np.ndarray  # int64 [N]
    split: np.ndarray  # uint8 [N], SPLIT_TRAIN or SPLIT_VAL
    w_alpha: np.ndarray  # float32 [N]
    w_beta: np.ndarray
    w_delta: np.ndarray
    w: np.ndarray  # w_alpha + w_beta + w_delta
    loss: np.ndarray  # unweighted per-sample loss (cross-entropy or focal)
    p_label: np.ndarray  # softmax probability of the given label, s[y]
    p_max: np.ndarray  # max softmax probability, max(s)
    predicted: np.ndarray  # int64 argmax class
    margin: np.ndarray  # logit of the given label minus the largest other logit (AUM's margin)
    el2n: np.ndarray  # || softmax - onehot(y) ||_2
    # FBR's agreement d_i with the trusted samples of the given label (train rows from their
    # batch, validation = trusted rows at the epoch's end; NaN where the label has no trusted
    # sample); None unless the run trains with weighting="fbr".
    fbr_agreement: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.sample_index)


@dataclass
class DynamicsHistory:
    """All epochs stacked: every array field is [E, N], row e = epoch e+1, column = sample index."""

    epochs: np.ndarray  # int [E]
    split: np.ndarray  # uint8 [N]: the last epoch's (every epoch's, unless the split rotates)
    w_alpha: np.ndarray
    w_beta: np.ndarray
    w_delta: np.ndarray
    w: np.ndarray
    loss: np.ndarray
    p_label: np.ndarray
    p_max: np.ndarray
    predicted: np.ndarray
    margin: np.ndarray
    el2n: np.ndarray
    # uint8 [E, N]: every epoch's split (a rotating validation split differs by epoch); None
    # where only the last epoch's is known (then every epoch counts as having it).
    epoch_split: np.ndarray | None = None
    fbr_agreement: np.ndarray | None = None  # [E, N] (see EpochDynamics); None unless FBR ran

    @classmethod
    def stack(cls, epochs: list[EpochDynamics]) -> "DynamicsHistory":
        """Epochs side by side, columns ordered by sample index. An optional field is stacked
        when any epoch has it, NaN in the epochs that lack it."""
        if not epochs:
            raise ValueError("no epochs to stack")
        order = [np.argsort(e.sample_index, kind="stable") for e in epochs]
        columns = {
            f.name: np.stack([getattr(e, f.name)[o] for e, o in zip(epochs, order)])
            for f in fields(EpochDynamics)
            if f.name not in ("epoch", "sample_index", "split", *OPTIONAL_FLOAT_FIELDS)
        }
        for name in OPTIONAL_FLOAT_FIELDS:
            if any(getattr(e, name) is not None for e in epochs):
                columns[name] = np.stack([
                    np.full(len(e), np.nan, dtype=np.float32) if getattr(e, name) is None else getattr(e, name)[o]
                    for e, o in zip(epochs, order)
                ])
        return cls(
            epochs=np.array([e.epoch for e in epochs]),
            split=epochs[-1].split[order[-1]],
            epoch_split=np.stack([e.split[o] for e, o in zip(epochs, order)]),
            **columns,
        )

    @property
    def num_samples(self) -> int:
        return self.w_alpha.shape[1]
