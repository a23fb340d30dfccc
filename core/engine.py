"""The training loop: trains a classifier (with LiLAW or plain loss) and captures per-sample dynamics.

Every epoch produces one `EpochDynamics` row per sample: train samples from the training forward
pass itself (no extra pass), validation samples from an out-of-sample pass at the epoch's end.
The loop hands each epoch to a callback and knows nothing about where it goes.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.dataset import AuditDataset
from core.dynamics import FLOAT_FIELDS, SPLIT_TRAIN, SPLIT_VAL, DynamicsHistory, EpochDynamics
from core.errors import ConfigError
from core.lilaw import LilawConfig, LilawParameters, label_and_max_probability, per_sample_loss
from core.models import build_model, default_model_name

WEIGHTINGS = ("lilaw", "none")
# Inputs below this size live on the accelerator for the whole run (no per-batch copies).
_DEVICE_RESIDENT_BYTES = 1 << 30


class AuditCancelled(Exception):
    """Raised inside the loop when `should_stop()` says so; the last checkpoint stays valid."""


@dataclass
class TrainConfig:
    model: str | None = None  # None: the modality's default (see core.models.default_model_name)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weighting: str = "lilaw"
    loss: str = "ce"
    focal_gamma: float = 2.0
    val_fraction: float = 0.1
    seed: int = 0
    lilaw: LilawConfig = field(default_factory=LilawConfig)
    pretrained: bool = False
    weights_path: str | None = None
    image_size: int | None = None  # resize images on the fly (e.g. 224 for a pretrained backbone)
    device: str | None = None  # None: CUDA when available, else CPU
    progress_every: int = 20  # steps between progress callbacks
    # Off only where nobody reads the dynamics (cross-fitting, the plain-training baseline of
    # benchmarks/overhead.py); fit() then returns no history.
    record_dynamics: bool = True

    def validate(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {self.batch_size}")
        if self.lr <= 0:
            raise ConfigError(f"learning rate must be > 0, got {self.lr}")
        if self.weighting not in WEIGHTINGS:
            raise ConfigError(f"unknown weighting {self.weighting!r}: use one of {WEIGHTINGS}")
        if self.loss not in ("ce", "focal"):
            raise ConfigError(f"unknown loss {self.loss!r}: use 'ce' or 'focal'")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"validation fraction must be in [0, 1), got {self.val_fraction}")
        if self.weighting == "lilaw" and self.val_fraction == 0:
            raise ConfigError("LiLAW needs a validation split: set a validation fraction > 0")
        self.lilaw.validate()


@dataclass(frozen=True)
class WarmStart:
    """Where a warm-started run begins: a previous run's trained weights and its final α, β, δ."""
    model_state: dict[str, torch.Tensor]
    lilaw_values: tuple[float, float, float]  # alpha, beta, delta


@dataclass
class Progress:
    epoch: int
    total_epochs: int
    step: int  # steps done in this epoch
    steps_per_epoch: int
    elapsed_s: float
    eta_s: float | None


@dataclass
class TrainResult:
    model: nn.Module
    model_name: str
    history: DynamicsHistory | None  # None when record_dynamics is off
    split: np.ndarray  # uint8 [N]
    # One row per meta step (and one per epoch start), columns: step, epoch, alpha, beta, delta.
    trajectory: np.ndarray
    epoch_seconds: list[float]
    device: str


def make_split(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Stratified, seeded train/validation assignment: uint8 [N] of SPLIT_TRAIN / SPLIT_VAL."""
    split = np.full(len(labels), SPLIT_TRAIN, dtype=np.uint8)
    if val_fraction == 0:
        return split
    rng = np.random.default_rng(seed)
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val = int(round(val_fraction * len(members)))
        if len(members) > 1:
            split[members[: min(n_val, len(members) - 1)]] = SPLIT_VAL
    if not (split == SPLIT_VAL).any():
        raise ConfigError("the validation split is empty: raise the validation fraction or add samples")
    return split


class Inputs:
    """Model inputs as float batches on the training device, normalised with the dataset's statistics."""

    def __init__(self, x: np.ndarray, modality: str, device: torch.device, image_size: int | None,
                 stats: tuple[torch.Tensor, torch.Tensor] | None = None):
        tensor = torch.from_numpy(np.ascontiguousarray(x))
        self.x = tensor.to(device) if tensor.nbytes <= _DEVICE_RESIDENT_BYTES else tensor
        self.modality = modality
        self.device = device
        self.image_size = image_size
        self.mean, self.std = stats if stats is not None else self._statistics()

    def _statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.x[:10_000].float()
        if self.modality == "image":
            sample = sample / 255.0
        if self.modality == "timeseries":  # one mean/std over all points keeps the series' shape
            dims, shape = list(range(sample.ndim)), [1] * sample.ndim
        else:  # per channel (images) or per feature (tabular)
            dims = [0] + list(range(2, sample.ndim))
            shape = [1, sample.shape[1]] + [1] * (sample.ndim - 2)
        mean = sample.mean(dim=dims).reshape(shape).to(self.device)
        std = sample.std(dim=dims).clamp_min(1e-6).reshape(shape).to(self.device)
        return mean, std

    def like(self, x: np.ndarray) -> "Inputs":
        """Other inputs of the same kind (a test split), normalised with these statistics."""
        return Inputs(x, self.modality, self.device, self.image_size, (self.mean, self.std))

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        xb = self.x[index.to(self.x.device)].to(self.device, non_blocking=True).float()
        if self.modality == "image":
            xb = xb / 255.0
        xb = (xb - self.mean) / self.std
        if self.modality == "image" and self.image_size and xb.shape[-1] != self.image_size:
            xb = nn.functional.interpolate(xb, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return xb


class _EpochBuffers:
    """Per-sample dynamics of one epoch, filled batch by batch on the device (no host syncs)."""

    def __init__(self, n: int, device: torch.device):
        self.columns = {name: torch.zeros(n, dtype=torch.float32, device=device) for name in FLOAT_FIELDS}
        self.columns["predicted"] = torch.zeros(n, dtype=torch.int64, device=device)

    def record(self, index: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        for name, column in self.columns.items():
            column[index] = values[name].detach().to(column.dtype)

    def to_epoch(self, epoch: int, split: np.ndarray) -> EpochDynamics:
        host = {name: column.cpu().numpy() for name, column in self.columns.items()}
        return EpochDynamics(epoch=epoch, sample_index=np.arange(len(split), dtype=np.int64), split=split.copy(), **host)


def _batch_dynamics(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss: torch.Tensor,
    params: LilawParameters,
    softmax: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """The batch's per-sample fields; `softmax` is label_and_max_probability of these logits."""
    with torch.no_grad():
        logits = logits.detach().float()
        probs, p_label, p_max = (t.detach() for t in softmax)
        w_alpha, w_beta, w_delta = params.weights(p_label, p_max)
        label_logit = logits.gather(1, labels[:, None]).squeeze(1)
        others = logits.scatter(1, labels[:, None], float("-inf"))
        el2n = (probs.square().sum(1) - 2 * p_label + 1).clamp_min(0).sqrt()
        return {
            "w_alpha": w_alpha, "w_beta": w_beta, "w_delta": w_delta, "w": w_alpha + w_beta + w_delta,
            "loss": loss.detach(), "p_label": p_label, "p_max": p_max, "predicted": probs.argmax(1),
            "margin": label_logit - others.max(1).values, "el2n": el2n,
        }


def _some(names: list[str], shown: int = 3) -> str:
    """The first few names, and how many more."""
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


class Trainer:
    """Trains one classifier on `dataset` and records its per-sample dynamics epoch by epoch.

    `warm_start` begins from a previous run's weights and final α, β, δ (a re-audit of a grown
    dataset): the optimizer starts fresh and LiLAW weighting is active from epoch 1, since α, β, δ
    are already meta-learned. A checkpoint that `fit` resumes from still overrides all of it; pass
    the same `warm_start` again on resume so that the warm-up rule stays the same.
    """

    def __init__(self, dataset: AuditDataset, config: TrainConfig, split: np.ndarray | None = None,
                 *, warm_start: WarmStart | None = None):
        config.validate()
        self.dataset = dataset
        self.config = config
        self.device = torch.device(config.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        torch.manual_seed(config.seed)
        self.model_name = config.model or default_model_name(dataset.modality, dataset.input_shape)
        input_shape = dataset.input_shape
        if dataset.modality == "image" and config.image_size:
            input_shape = (input_shape[0], config.image_size, config.image_size)
        self.model = build_model(
            self.model_name, dataset.modality, input_shape, dataset.num_classes,
            pretrained=config.pretrained, weights_path=config.weights_path,
        ).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.params = LilawParameters(config.lilaw, self.device)
        self.warm_start = warm_start
        if warm_start is not None:
            self._apply_warm_start(warm_start)
        self.split = make_split(dataset.y, config.val_fraction, config.seed) if split is None else split
        self.inputs = Inputs(dataset.x, dataset.modality, self.device, config.image_size)
        self.labels = torch.from_numpy(dataset.y.astype(np.int64)).to(self.device)
        self.train_index = torch.from_numpy(np.flatnonzero(self.split == SPLIT_TRAIN)).to(self.device)
        self.val_index = torch.from_numpy(np.flatnonzero(self.split == SPLIT_VAL)).to(self.device)
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed)
        self._val_queue = torch.empty(0, dtype=torch.int64, device=self.device)
        self.autocast, self.scaler = self._mixed_precision()

    def _apply_warm_start(self, warm_start: WarmStart) -> None:
        """Load the previous run's weights into the fresh model and its α, β, δ into LiLAW."""
        own, given = self.model.state_dict(), dict(warm_start.model_state)
        missing, unexpected = sorted(own.keys() - given.keys()), sorted(given.keys() - own.keys())
        shapes = [
            f"{name} has shape {tuple(given[name].shape)}, the model needs {tuple(own[name].shape)}"
            for name in own if name in given and tuple(given[name].shape) != tuple(own[name].shape)
        ]
        problems = [f"{what} {_some(names)}" for what, names in (("missing", missing), ("unexpected", unexpected)) if names]
        if problems or shapes:
            raise ConfigError(
                f"cannot warm start: the previous run's weights do not fit model {self.model_name!r} for this "
                f"dataset ({self.dataset.num_classes} classes, input {self.dataset.input_shape}): "
                + "; ".join(problems + shapes[:3] + ([f"{len(shapes) - 3} more shapes differ"] if len(shapes) > 3 else []))
            )
        values = tuple(float(v) for v in warm_start.lilaw_values)
        if len(values) != 3 or not all(np.isfinite(values)):
            raise ConfigError(f"cannot warm start: LiLAW values must be three finite numbers (α, β, δ), got {values}")
        self.model.load_state_dict(given)
        self.params.load_state_dict({"values": torch.tensor(values, dtype=torch.float32)})

    def _mixed_precision(self):
        if self.device.type != "cuda":
            return contextlib.nullcontext, None
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return (lambda: torch.autocast("cuda", dtype=dtype)), scaler

    @property
    def steps_per_epoch(self) -> int:
        return -(-len(self.train_index) // self.config.batch_size)

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return per_sample_loss(logits, labels, self.config.loss, self.config.focal_gamma)

    def _weighting_active(self, epoch: int) -> bool:
        # A warm start's α, β, δ are already meta-learned: no warm-up epoch. Derived from the
        # argument, not stored in checkpoints, so a resumed warm-started run keeps the rule.
        warmup_epochs = 0 if self.warm_start is not None else self.config.lilaw.warmup_epochs
        return self.config.weighting == "lilaw" and epoch > warmup_epochs

    def _next_meta_batch(self) -> torch.Tensor:
        """The next validation batch of a shuffled pass over the validation split, reshuffled when used up."""
        size = min(self.config.lilaw.meta_batch_size, len(self.val_index))
        if len(self._val_queue) < size:
            order = torch.randperm(len(self.val_index), generator=self.generator).to(self.device)
            self._val_queue = self.val_index[order]
        batch, self._val_queue = self._val_queue[:size], self._val_queue[size:]
        return batch

    def train_step(self, index: torch.Tensor, weighted: bool) -> dict[str, torch.Tensor] | None:
        """One optimiser step on the batch; returns the batch's dynamics (from this forward pass)."""
        labels = self.labels[index]
        with self.autocast():
            logits = self.model(self.inputs.batch(index))
        loss = self._loss(logits, labels)
        # One softmax serves the weights and the recorded dynamics; plain training without
        # dynamics (the overhead baseline, cross-fitting) needs none.
        softmax = label_and_max_probability(logits, labels) if weighted or self.config.record_dynamics else None
        if weighted:
            _, p_label, p_max = softmax
            w_alpha, w_beta, w_delta = self.params.weights(p_label, p_max)
            objective = ((w_alpha + w_beta + w_delta) * loss).mean()
        else:
            objective = loss.mean()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(objective).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            objective.backward()
            self.optimizer.step()
        if not self.config.record_dynamics:
            return None
        return _batch_dynamics(logits, labels, loss, self.params, softmax)

    def meta_step(self) -> None:
        """Algorithm 1, lines 12–20: the network frozen, one gradient step on (α, β, δ)."""
        index = self._next_meta_batch()
        labels = self.labels[index]
        self.model.eval()
        with torch.no_grad(), self.autocast():
            logits = self.model(self.inputs.batch(index))
        self.model.train()
        _, p_label, p_max = label_and_max_probability(logits, labels)
        self.params.meta_step(p_label, p_max, self._loss(logits, labels))

    @torch.no_grad()
    def forward_dynamics(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Out-of-sample dynamics of the samples in `index` (eval mode, no update)."""
        self.model.eval()
        out: dict[str, list[torch.Tensor]] = {}
        for chunk in index.split(max(self.config.batch_size, 256)):
            labels = self.labels[chunk]
            with self.autocast():
                logits = self.model(self.inputs.batch(chunk))
            softmax = label_and_max_probability(logits, labels)
            for name, value in _batch_dynamics(logits, labels, self._loss(logits, labels), self.params, softmax).items():
                out.setdefault(name, []).append(value)
        self.model.train()
        return {name: torch.cat(values) for name, values in out.items()}

    @torch.no_grad()
    def predict_proba(self, x: np.ndarray | None = None, index: np.ndarray | None = None) -> np.ndarray:
        """Softmax probabilities for new inputs `x` (same format as the dataset), or for dataset rows."""
        inputs = self.inputs if x is None else self.inputs.like(x)
        rows = torch.arange(len(inputs.x)) if index is None else torch.from_numpy(np.asarray(index))
        self.model.eval()
        probs = []
        for chunk in rows.split(max(self.config.batch_size, 256)):
            with self.autocast():
                logits = self.model(inputs.batch(chunk.to(self.device)))
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
        self.model.train()
        return torch.cat(probs).numpy()

    def fit(
        self,
        on_epoch: Callable[[EpochDynamics], None] | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        checkpoint_path: str | Path | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult:
        epochs: list[EpochDynamics] = []
        trajectory: list[torch.Tensor] = []
        epoch_seconds: list[float] = []
        start_epoch = 1
        if checkpoint_path and Path(checkpoint_path).is_file():
            start_epoch, epochs, trajectory, epoch_seconds = self._load_checkpoint(checkpoint_path)

        total_epochs = self.config.epochs
        resumed_at, earlier_seconds = time.perf_counter(), sum(epoch_seconds)
        self.model.train()
        for epoch in range(start_epoch, total_epochs + 1):
            epoch_started = time.perf_counter()
            weighted = self._weighting_active(epoch)
            buffers = _EpochBuffers(len(self.split), self.device) if self.config.record_dynamics else None
            order = self.train_index[torch.randperm(len(self.train_index), generator=self.generator).to(self.device)]
            trajectory.append(self._trajectory_point(0, epoch))
            for step, index in enumerate(order.split(self.config.batch_size), start=1):
                batch_dynamics = self.train_step(index, weighted)
                if buffers is not None:
                    buffers.record(index, batch_dynamics)
                if weighted:
                    self.meta_step()
                    trajectory.append(self._trajectory_point(step, epoch))
                if on_progress and (step % self.config.progress_every == 0 or step == self.steps_per_epoch):
                    on_progress(self._progress(epoch, step, resumed_at, start_epoch, earlier_seconds))
                if should_stop and step % self.config.progress_every == 0 and should_stop():
                    raise AuditCancelled(f"stopped at epoch {epoch}, step {step}")
            if buffers is not None:
                if len(self.val_index):
                    buffers.record(self.val_index, self.forward_dynamics(self.val_index))
                epochs.append(buffers.to_epoch(epoch, self.split))
                if on_epoch:
                    on_epoch(epochs[-1])
            epoch_seconds.append(time.perf_counter() - epoch_started)
            if checkpoint_path:
                self._save_checkpoint(checkpoint_path, epoch, epochs, trajectory, epoch_seconds)
            if should_stop and should_stop():
                raise AuditCancelled(f"stopped after epoch {epoch}")

        return TrainResult(
            model=self.model,
            model_name=self.model_name,
            history=DynamicsHistory.stack(epochs) if epochs else None,
            split=self.split,
            trajectory=torch.stack(trajectory).cpu().numpy() if trajectory else np.zeros((0, 5)),
            epoch_seconds=epoch_seconds,
            device=str(self.device),
        )

    def _trajectory_point(self, step: int, epoch: int) -> torch.Tensor:
        head = torch.tensor([step, epoch], dtype=torch.float32, device=self.device)
        return torch.cat([head, self.params.values.detach().clone()])

    def _progress(self, epoch: int, step: int, resumed_at: float, start_epoch: int, earlier_seconds: float) -> Progress:
        """Progress with an ETA from the pace of this run (a resumed run does not count earlier epochs)."""
        steps_total = self.config.epochs * self.steps_per_epoch
        steps_done = (epoch - 1) * self.steps_per_epoch + step
        steps_this_run = steps_done - (start_epoch - 1) * self.steps_per_epoch
        this_run = time.perf_counter() - resumed_at
        eta = this_run / steps_this_run * (steps_total - steps_done) if steps_this_run else None
        return Progress(epoch, self.config.epochs, step, self.steps_per_epoch, earlier_seconds + this_run, eta)

    # Checkpoints hold tensors and plain Python values only, so they load with weights_only=True.
    def _save_checkpoint(self, path, epoch, epochs, trajectory, epoch_seconds) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        history = {
            name: torch.from_numpy(np.stack([getattr(e, name) for e in epochs])) for name in (*FLOAT_FIELDS, "predicted")
        } if epochs else {}
        state = {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lilaw": self.params.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "val_queue": self._val_queue.cpu(),
            "split": torch.from_numpy(self.split),
            "history": history,
            "trajectory": torch.stack(trajectory).cpu(),
            "epoch_seconds": list(epoch_seconds),
        }
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)

    def _load_checkpoint(self, path):
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.params.load_state_dict(state["lilaw"])
        self.generator.set_state(state["generator"].cpu())
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self._val_queue = state["val_queue"].to(self.device)
        if not np.array_equal(state["split"].cpu().numpy(), self.split):
            raise ConfigError("the checkpoint was written for a different train/validation split")
        history = {name: tensor.cpu().numpy() for name, tensor in state["history"].items()}
        epochs = [
            EpochDynamics(
                epoch=e + 1, sample_index=np.arange(len(self.split), dtype=np.int64), split=self.split.copy(),
                **{name: values[e] for name, values in history.items()},
            )
            for e in range(state["epoch"] if history else 0)
        ]
        trajectory = list(state["trajectory"].to(self.device).unbind(0))
        return state["epoch"] + 1, epochs, trajectory, list(state["epoch_seconds"])
