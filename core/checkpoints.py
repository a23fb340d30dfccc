"""Where a training run starts when not from scratch: its own checkpoint, to resume exactly where
it stopped, or a previous run's trained weights and α, β, δ, to warm start.

Checkpoints hold tensors and plain Python values only, so they load with weights_only=True. Each
is written to a temporary file and renamed over the previous one, so that a crash while writing
leaves the previous checkpoint whole.

The per-sample dynamics of the epochs so far (what the scores are computed from) grow with every
epoch, so they are not in the checkpoint file: each epoch's arrays are written once, to their own
file in a folder beside it (`history_dir`), before the checkpoint that counts them; a checkpoint
loads the epochs it names and ignores any file a crashed epoch left behind. Per epoch a
checkpoint costs the model, the optimizer and one epoch's arrays, not the whole history.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from core.dataset import AuditDataset
from core.dynamics import FLOAT_FIELDS, EpochDynamics
from core.errors import ConfigError
from core.lilaw import LilawParameters


@dataclass(frozen=True)
class WarmStart:
    """Where a warm-started run begins: a previous run's trained weights and its final α, β, δ."""
    model_state: dict[str, torch.Tensor]
    lilaw_values: tuple[float, float, float]  # alpha, beta, delta


@dataclass
class FitState:
    """What `Trainer.fit` builds up; a checkpoint holds all of it but this run's clock (for the ETA)."""

    start_epoch: int = 1
    epochs: list[EpochDynamics] = field(default_factory=list)
    trajectory: list[torch.Tensor] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    resumed_at: float = 0.0  # perf_counter() when this run began or resumed
    earlier_seconds: float = 0.0  # training time of the epochs before the resume
    # FBR's per-sample arrays of every epoch so far (name -> float32 [N]); empty without FBR.
    fbr: list[dict[str, np.ndarray]] = field(default_factory=list)
    saved_epochs: int = 0  # how many of `epochs` (and `fbr`) are in the history folder already


class Resumable(Protocol):
    """The parts of a trainer that a checkpoint saves and restores."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    params: LilawParameters
    generator: torch.Generator
    val_queue: torch.Tensor  # the validation samples left for meta batches in this pass
    split: np.ndarray
    device: torch.device


HISTORY_FIELDS = (*FLOAT_FIELDS, "predicted")
FBR_PREFIX = "fbr."  # FBR's arrays in an epoch's history file


def history_dir(path: str | Path) -> Path:
    """The folder beside checkpoint `path` holding one file per epoch's dynamics."""
    path = Path(path)
    return path.with_name(path.name + ".epochs")


def remove_checkpoint(path: str | Path) -> None:
    """Delete the checkpoint and its epochs' history; nothing to delete is fine."""
    Path(path).unlink(missing_ok=True)
    shutil.rmtree(history_dir(path), ignore_errors=True)


def save_checkpoint(path: str | Path, trainer: Resumable, epoch: int, state: FitState) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _save_new_epochs(history_dir(path), state)
    checkpoint = {
        "epoch": epoch,
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "lilaw": trainer.params.state_dict(),
        "generator": trainer.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if trainer.device.type == "cuda" else [],
        "val_queue": trainer.val_queue.cpu(),
        "split": torch.from_numpy(trainer.split),
        "history_epochs": [int(e.epoch) for e in state.epochs],
        "trajectory": torch.stack(state.trajectory).cpu(),
        "epoch_seconds": list(state.epoch_seconds),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def _save_new_epochs(directory: Path, state: FitState) -> None:
    """Write the epochs not in the history folder yet, each atomically; a file of the same epoch
    left by a crashed run (never counted by a checkpoint) is replaced."""
    directory.mkdir(exist_ok=True)
    for position in range(state.saved_epochs, len(state.epochs)):
        dynamics = state.epochs[position]
        arrays = {name: getattr(dynamics, name) for name in HISTORY_FIELDS}
        if position < len(state.fbr):
            arrays.update({FBR_PREFIX + name: values for name, values in state.fbr[position].items()})
        file = _epoch_file(directory, dynamics.epoch)
        partial = file.with_name(file.name + ".partial")
        with open(partial, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(partial, file)
    state.saved_epochs = len(state.epochs)


def _epoch_file(directory: Path, epoch: int) -> Path:
    return directory / f"epoch-{int(epoch):05d}.npz"


def load_checkpoint(path: str | Path, trainer: Resumable) -> FitState:
    """Restore the trainer to where the checkpoint was saved; returns the run's state up to then."""
    path = Path(path)
    checkpoint = torch.load(path, map_location=trainer.device, weights_only=True)
    trainer.model.load_state_dict(checkpoint["model"])
    trainer.optimizer.load_state_dict(checkpoint["optimizer"])
    trainer.params.load_state_dict(checkpoint["lilaw"])
    trainer.generator.set_state(checkpoint["generator"].cpu())
    torch.set_rng_state(checkpoint["torch_rng"].cpu())
    if checkpoint["cuda_rng"]:
        torch.cuda.set_rng_state_all([s.cpu() for s in checkpoint["cuda_rng"]])
    trainer.val_queue = checkpoint["val_queue"].to(trainer.device)
    # A rotating split changes every epoch: each epoch's is recomputed from the seed.
    split_of_epoch = getattr(trainer, "split_of_epoch", lambda epoch: trainer.split)
    if not np.array_equal(checkpoint["split"].cpu().numpy(), split_of_epoch(checkpoint["epoch"])):
        raise ConfigError("the checkpoint was written for a different train/validation split")
    if "history_epochs" in checkpoint:
        numbers = [int(number) for number in checkpoint["history_epochs"]]
        columns, fbr = _load_epochs(history_dir(path), numbers)
    else:  # a checkpoint written before the history moved out of it
        columns = _unstack(checkpoint["history"])[: checkpoint["epoch"]]
        numbers = list(range(1, len(columns) + 1))
        fbr = _unstack(checkpoint.get("fbr", {}))
    epochs = [
        EpochDynamics(
            epoch=number, sample_index=np.arange(len(trainer.split), dtype=np.int64),
            split=split_of_epoch(number).copy(), **values,
        )
        for number, values in zip(numbers, columns)
    ]
    for dynamics, fbr_epoch in zip(epochs, fbr):  # FBR's agreement is a dynamics field too
        dynamics.fbr_agreement = fbr_epoch.get("fbr_agreement")
    return FitState(
        start_epoch=checkpoint["epoch"] + 1,
        epochs=epochs,
        trajectory=list(checkpoint["trajectory"].to(trainer.device).unbind(0)),
        epoch_seconds=list(checkpoint["epoch_seconds"]),
        fbr=fbr,
        saved_epochs=len(epochs),
    )


def _load_epochs(directory: Path, numbers: list[int]) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """The dynamics and FBR arrays of the epochs a checkpoint counts, from the history folder."""
    columns, fbr = [], []
    for number in numbers:
        file = _epoch_file(directory, number)
        if not file.is_file():
            raise ConfigError(f"the checkpoint's history of epoch {number} is missing ({file.name})")
        with np.load(file, allow_pickle=False) as stored:
            columns.append({name: stored[name] for name in HISTORY_FIELDS})
            extra = {name[len(FBR_PREFIX):]: stored[name] for name in stored.files if name.startswith(FBR_PREFIX)}
        if extra:
            fbr.append(extra)
    return columns, fbr


def _unstack(columns: dict[str, torch.Tensor]) -> list[dict[str, np.ndarray]]:
    """{name: [E, N]} back into one {name: [N]} per epoch."""
    host = {name: tensor.cpu().numpy() for name, tensor in columns.items()}
    rows = len(next(iter(host.values()))) if host else 0
    return [{name: values[e] for name, values in host.items()} for e in range(rows)]


def apply_warm_start(
    warm_start: WarmStart, model: nn.Module, params: LilawParameters, *, model_name: str, dataset: AuditDataset
) -> None:
    """Load the previous run's weights into the fresh `model` and its α, β, δ into `params`."""
    own, given = model.state_dict(), dict(warm_start.model_state)
    missing, unexpected = sorted(own.keys() - given.keys()), sorted(given.keys() - own.keys())
    shapes = [
        f"{name} has shape {tuple(given[name].shape)}, the model needs {tuple(own[name].shape)}"
        for name in own if name in given and tuple(given[name].shape) != tuple(own[name].shape)
    ]
    problems = [f"{what} {_some(names)}" for what, names in (("missing", missing), ("unexpected", unexpected)) if names]
    if problems or shapes:
        raise ConfigError(
            f"cannot warm start: the previous run's weights do not fit model {model_name!r} for this "
            f"dataset ({dataset.num_classes} classes, input {dataset.input_shape}): "
            + "; ".join(problems + shapes[:3] + ([f"{len(shapes) - 3} more shapes differ"] if len(shapes) > 3 else []))
        )
    values = tuple(float(v) for v in warm_start.lilaw_values)
    if len(values) != 3 or not all(np.isfinite(values)):
        raise ConfigError(f"cannot warm start: LiLAW values must be three finite numbers (α, β, δ), got {values}")
    model.load_state_dict(given)
    params.load_state_dict({"values": torch.tensor(values, dtype=torch.float32)})


def _some(names: list[str], shown: int = 3) -> str:
    """The first few names, and how many more."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")
