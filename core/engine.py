"""The training loop: trains a classifier (with LiLAW or plain loss) and captures per-sample dynamics.

Every epoch produces one `EpochDynamics` row per sample: train samples from the training forward
pass itself (no extra pass), validation samples from an out-of-sample pass at the epoch's end.
The loop hands each epoch to a callback and knows nothing about where it goes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.audit_config import TrainConfig
from core.augment import augment_images
from core.checkpoints import FitState, WarmStart, apply_warm_start, load_checkpoint, save_checkpoint
from core.dataset import AuditDataset
from core.dynamics import FLOAT_FIELDS, SPLIT_TRAIN, SPLIT_VAL, DynamicsHistory, EpochDynamics
from core.errors import ConfigError
from core.fbr import FbrBatch, default_alpha0, fbr_batch
from core.lilaw import LilawParameters, label_and_max_probability, per_sample_loss
from core.models import build_model, default_model_name, penultimate_features
from core.sample_store import RowReader, SegmentedRows
from core.splits import make_folds, make_split, split_of_epoch, trusted_arrays, trusted_split

# Inputs below this size live on the accelerator for the whole run (no per-batch copies).
_DEVICE_RESIDENT_BYTES = 1 << 30
# The last epoch's class probabilities are kept (TrainResult.final_probs) up to this many values.
FINAL_PROBS_MAX_VALUES = 1 << 26


class AuditCancelled(Exception):
    """Raised inside the loop when `should_stop()` says so; the last checkpoint stays valid."""


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
    # weighting="fbr": per-sample FBR arrays [E, N] (name -> array): "fbr_agreement" d_i (train
    # rows from their batch, validation = trusted rows at the epoch's end; NaN where the given label
    # has no trusted sample) and "fbr_weight" w_i (NaN for the validation rows, which are not
    # trained on). None for the other weightings or without recorded dynamics.
    fbr: dict[str, np.ndarray] | None = None
    # float32 [N, C]: the class probabilities behind the last epoch's recorded dynamics (its
    # `predicted` is their argmax): train rows from their training forward pass, validation rows
    # from the epoch-end pass. None without dynamics, past FINAL_PROBS_MAX_VALUES, or when every
    # epoch was done before this run (resumed after the last checkpoint).
    final_probs: np.ndarray | None = None


class Inputs:
    """Model inputs as float batches on the training device, normalised with the dataset's statistics.

    Inputs of at most `stream_above_bytes` are one tensor (on the accelerator when they fit
    `_DEVICE_RESIDENT_BYTES`). A larger memory-mapped shard, or a version's segments of shards
    (`core.sample_store`), is never made resident: each batch's rows are read from the files
    (`RowReader`), so the process holds one batch, not the dataset, whatever its size."""

    stream_above_bytes = 256 * 1024**2

    def __init__(self, x: np.ndarray, modality: str, device: torch.device, image_size: int | None,
                 stats: tuple[torch.Tensor, torch.Tensor] | None = None):
        self.reader: RowReader | None = None
        on_disk = isinstance(x, (np.memmap, SegmentedRows))
        if on_disk and x.nbytes > self.stream_above_bytes:
            self.x = x  # its length and shape only; rows come from the reader
            self.reader = RowReader(x)
        else:
            # A small read-only shard is read into memory: a tensor must not share its pages.
            resident = np.array(x) if on_disk else np.ascontiguousarray(x)
            tensor = torch.from_numpy(resident)
            self.x = tensor.to(device) if tensor.nbytes <= _DEVICE_RESIDENT_BYTES else tensor
        self.modality = modality
        self.device = device
        self.image_size = image_size
        self.mean, self.std = stats if stats is not None else self._statistics()

    def _rows(self, index: torch.Tensor) -> torch.Tensor:
        if self.reader is None:
            return self.x[index.to(self.x.device)]
        rows = torch.from_numpy(self.reader.read(index.cpu().numpy()))
        return rows.pin_memory() if self.device.type == "cuda" else rows

    def _statistics(self) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self._rows(torch.arange(min(len(self.x), 10_000))).float()
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
        xb = self._rows(index).to(self.device, non_blocking=True).float()
        if self.modality == "image":
            xb = xb / 255.0
        xb = (xb - self.mean) / self.std
        if self.modality == "image" and self.image_size and xb.shape[-1] != self.image_size:
            xb = nn.functional.interpolate(xb, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return xb


class _EpochBuffers:
    """Per-sample dynamics of one epoch, filled batch by batch on the device (no host syncs)."""

    def __init__(self, n: int, device: torch.device, num_classes: int | None = None):
        self.columns = {name: torch.zeros(n, dtype=torch.float32, device=device) for name in FLOAT_FIELDS}
        self.columns["predicted"] = torch.zeros(n, dtype=torch.int64, device=device)
        if num_classes is not None:  # the class probabilities too (the run's last epoch)
            self.columns["probs"] = torch.zeros((n, num_classes), dtype=torch.float32, device=device)

    def record(self, index: torch.Tensor, values: dict[str, torch.Tensor]) -> None:
        for name, column in self.columns.items():
            column[index] = values[name].detach().to(column.dtype)

    def to_epoch(self, epoch: int, split: np.ndarray) -> EpochDynamics:
        host = {name: column.cpu().numpy() for name, column in self.columns.items() if name != "probs"}
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
            "margin": label_logit - others.max(1).values, "el2n": el2n, "probs": probs,
        }


class Trainer:
    """Trains one classifier on `dataset` and records its per-sample dynamics epoch by epoch.

    `warm_start` begins from a previous run's weights and final α, β, δ (a re-audit of a grown
    dataset): the optimizer starts fresh and LiLAW weighting is active from epoch 1, since α, β, δ
    are already meta-learned. A checkpoint that `fit` resumes from still overrides all of it; pass
    the same `warm_start` again on resume so that the warm-up rule stays the same.

    `trusted` ({sample index: trusted label}, e.g. reviewers' verdicts) becomes the validation
    split (unless `split` is given): held out from training, LiLAW's meta steps read it with the
    trusted labels, and FBR (`weighting="fbr"`, which needs it) uses it as its clean set.
    """

    def __init__(self, dataset: AuditDataset, config: TrainConfig, split: np.ndarray | None = None,
                 *, warm_start: WarmStart | None = None, trusted: dict[int, int] | None = None):
        config.validate()
        if config.weighting == "fbr" and not trusted:
            raise ConfigError("FBR weighting needs a trusted set (samples whose labels are trusted)")
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
            apply_warm_start(warm_start, self.model, self.params, model_name=self.model_name, dataset=dataset)
        self.trusted_index, trusted_labels = (
            trusted_arrays(trusted, len(dataset), dataset.num_classes) if trusted else (None, None)
        )
        # A rotating validation split (config.val_split "rotate"): the fold of every sample; epoch e
        # holds out fold (e − 1) mod K. None for a fixed split: a given one, a trusted set, or "fixed".
        self.folds: np.ndarray | None = None
        if split is None and not trusted and config.val_split == "rotate" and config.val_fraction > 0:
            self.folds = make_folds(dataset.y, config.val_fraction, config.seed)
        if split is None:
            split = (trusted_split(len(dataset), self.trusted_index) if trusted
                     else self.split_of_epoch(1) if self.folds is not None
                     else make_split(dataset.y, config.val_fraction, config.seed))
        self.split = split  # the split of the current epoch (every epoch's, unless rotating)
        self.inputs = Inputs(dataset.x, dataset.modality, self.device, config.image_size)
        self.labels = torch.from_numpy(dataset.y.astype(np.int64)).to(self.device)
        # The labels the meta steps read: the given ones, the trusted label where there is one.
        self.meta_labels = self.labels
        self.fbr_clean: tuple[torch.Tensor, torch.Tensor] | None = None  # (index, trusted labels)
        if trusted:
            self.meta_labels = self.labels.clone()
            index = torch.from_numpy(self.trusted_index).to(self.device)
            clean_labels = torch.from_numpy(trusted_labels).to(self.device)
            self.meta_labels[index] = clean_labels
            self.fbr_clean = index, clean_labels
            if config.weighting == "fbr" and len(np.unique(trusted_labels)) < 2:
                raise ConfigError("FBR needs trusted samples of at least 2 classes")
        self._fbr_epoch: dict | None = None  # this epoch's clean features, α0, warm-up flag and records
        self.train_index = torch.from_numpy(np.flatnonzero(self.split == SPLIT_TRAIN)).to(self.device)
        self.val_index = torch.from_numpy(np.flatnonzero(self.split == SPLIT_VAL)).to(self.device)
        self.generator = torch.Generator(device="cpu").manual_seed(config.seed)
        self.val_queue = torch.empty(0, dtype=torch.int64, device=self.device)
        self.autocast, self.scaler = self._mixed_precision()
        self.final_probs: np.ndarray | None = None  # set by `fit` in the last epoch (TrainResult.final_probs)

    def _mixed_precision(self):
        if self.device.type != "cuda":
            return contextlib.nullcontext, None
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return (lambda: torch.autocast("cuda", dtype=dtype)), scaler

    def split_of_epoch(self, epoch: int) -> np.ndarray:
        """The train/validation split of `epoch` (1-based), reproducible from the seed: the fixed
        split, or with a rotating one fold (epoch − 1) mod K held out and the others trained on."""
        if self.folds is None:
            return self.split
        return split_of_epoch(self.folds, epoch)

    def _rotate_split(self, epoch: int) -> None:
        """With a rotating split, make `epoch`'s split current; the meta batches start a fresh
        pass over its validation fold (so a resumed run draws them as an uninterrupted one)."""
        if self.folds is None:
            return
        self.split = self.split_of_epoch(epoch)
        self.train_index = torch.from_numpy(np.flatnonzero(self.split == SPLIT_TRAIN)).to(self.device)
        self.val_index = torch.from_numpy(np.flatnonzero(self.split == SPLIT_VAL)).to(self.device)
        self.val_queue = torch.empty(0, dtype=torch.int64, device=self.device)

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
        if len(self.val_queue) < size:
            order = torch.randperm(len(self.val_index), generator=self.generator).to(self.device)
            self.val_queue = self.val_index[order]
        batch, self.val_queue = self.val_queue[:size], self.val_queue[size:]
        return batch

    def train_step(self, index: torch.Tensor, weighted: bool) -> dict[str, torch.Tensor] | None:
        """One optimiser step on the batch; returns the batch's dynamics (from this forward pass)."""
        labels = self.labels[index]
        fbr_weight = self._fbr_train_weights(index, labels) if self._fbr_epoch is not None else None
        xb = self.inputs.batch(index)
        if self.config.augment and self.dataset.modality == "image":
            xb = augment_images(xb, self.generator)
        with self.autocast():
            logits = self.model(xb)
        loss = self._loss(logits, labels)
        # One softmax serves the weights and the recorded dynamics; plain training without
        # dynamics (the overhead baseline, cross-fitting) needs none.
        softmax = label_and_max_probability(logits, labels) if weighted or self.config.record_dynamics else None
        if weighted:
            _, p_label, p_max = softmax
            w_alpha, w_beta, w_delta = self.params.weights(p_label, p_max)
            weight = w_alpha + w_beta + w_delta
            if self.config.lilaw.detach_weights:
                weight = weight.detach()
            objective = (weight * loss).mean()
        elif fbr_weight is not None:
            objective = (fbr_weight * loss).mean()
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
        labels = self.meta_labels[index]
        self.model.eval()
        with torch.no_grad(), self.autocast():
            logits = self.model(self.inputs.batch(index))
        self.model.train()
        _, p_label, p_max = label_and_max_probability(logits, labels)
        self.params.meta_step(p_label, p_max, self._loss(logits, labels))

    @torch.no_grad()
    def _features(self, index: torch.Tensor) -> torch.Tensor:
        """Penultimate features of the samples in `index` (eval mode, no update), float32 [n, D]."""
        self.model.eval()
        chunks = []
        for chunk in index.split(max(self.config.batch_size, 256)):
            with self.autocast():
                chunks.append(penultimate_features(self.model, self.inputs.batch(chunk)).float())
        self.model.train()
        return torch.cat(chunks)

    def _start_fbr_epoch(self, epoch: int) -> None:
        """The clean set's features, recomputed once per epoch, and this epoch's α0 and warm-up."""
        fbr = self.config.fbr
        alpha0 = default_alpha0(self.dataset.num_classes) if fbr.alpha0 is None else fbr.alpha0
        if fbr.alpha0_epochs is not None and epoch > fbr.alpha0_epochs:
            alpha0 = 0.0
        # A warm start's features are already meaningful: no warm-up epoch (as for LiLAW).
        warmup_epochs = 0 if self.warm_start is not None else fbr.warmup_epochs
        index, labels = self.fbr_clean
        n = len(self.split)
        records = {
            name: torch.full((n,), float("nan"), device=self.device) for name in ("fbr_agreement", "fbr_weight")
        } if self.config.record_dynamics else None
        self._fbr_epoch = {"clean": (self._features(index), labels), "alpha0": alpha0,
                           "warm": epoch <= warmup_epochs, "records": records}

    def _fbr(self, index: torch.Tensor, labels: torch.Tensor) -> FbrBatch:
        features, clean_labels = self._fbr_epoch["clean"]
        return fbr_batch(self._features(index), labels, features, clean_labels,
                         self.dataset.num_classes, self._fbr_epoch["alpha0"])

    def _fbr_train_weights(self, index: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The batch's FBR weights (detached; all ½ in a warm-up epoch), recorded with the agreement."""
        batch = self._fbr(index, labels)
        weight = torch.full_like(batch.weight, 0.5) if self._fbr_epoch["warm"] else batch.weight
        records = self._fbr_epoch["records"]
        if records is not None:
            records["fbr_agreement"][index] = batch.agreement
            records["fbr_weight"][index] = weight
        return weight.detach()

    def _finish_fbr_epoch(self) -> dict[str, np.ndarray]:
        """The epoch's FBR arrays, the trusted (validation) rows' agreement measured now, against
        the clean features of the end of the epoch."""
        records = self._fbr_epoch["records"]
        if len(self.val_index):
            self._fbr_epoch["clean"] = (self._features(self.fbr_clean[0]), self.fbr_clean[1])
            records["fbr_agreement"][self.val_index] = self._fbr(self.val_index, self.labels[self.val_index]).agreement
        return {name: column.cpu().numpy() for name, column in records.items()}

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
        state = self._start_or_resume(checkpoint_path)
        self.model.train()
        for epoch in range(state.start_epoch, self.config.epochs + 1):
            epoch_started = time.perf_counter()
            self._rotate_split(epoch)
            buffers = self._train_epoch(epoch, state, on_progress, should_stop)
            if buffers is not None:
                state.epochs.append(self._epoch_dynamics(epoch, buffers))
                if "probs" in buffers.columns:
                    self.final_probs = buffers.columns["probs"].cpu().numpy()
                if self._fbr_epoch is not None:
                    state.fbr.append(self._finish_fbr_epoch())
                    state.epochs[-1].fbr_agreement = state.fbr[-1]["fbr_agreement"]
                if on_epoch:
                    on_epoch(state.epochs[-1])
            state.epoch_seconds.append(time.perf_counter() - epoch_started)
            if checkpoint_path:
                save_checkpoint(checkpoint_path, self, epoch, state)
            if should_stop and should_stop():
                raise AuditCancelled(f"stopped after epoch {epoch}")
        return self._result(state)

    def _start_or_resume(self, checkpoint_path: str | Path | None) -> FitState:
        """A fresh run, or the one the checkpoint holds; the ETA's clock starts now either way."""
        state = FitState()
        if checkpoint_path and Path(checkpoint_path).is_file():
            state = load_checkpoint(checkpoint_path, self)
        state.resumed_at, state.earlier_seconds = time.perf_counter(), sum(state.epoch_seconds)
        return state

    def _train_epoch(
        self,
        epoch: int,
        state: FitState,
        on_progress: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> _EpochBuffers | None:
        """One shuffled pass over the train split, with a meta step after each batch once LiLAW
        weighting is active; returns the train samples' dynamics (None when not recorded)."""
        weighted = self._weighting_active(epoch)
        if self.config.weighting == "fbr":
            self._start_fbr_epoch(epoch)
        buffers = _EpochBuffers(len(self.split), self.device, self._probs_width(epoch)) if self.config.record_dynamics else None
        order = self.train_index[torch.randperm(len(self.train_index), generator=self.generator).to(self.device)]
        state.trajectory.append(self._trajectory_point(0, epoch))
        for step, index in enumerate(order.split(self.config.batch_size), start=1):
            batch_dynamics = self.train_step(index, weighted)
            if buffers is not None:
                buffers.record(index, batch_dynamics)
            if weighted:
                self.meta_step()
                state.trajectory.append(self._trajectory_point(step, epoch))
            self._report_step(epoch, step, state, on_progress, should_stop)
        return buffers

    def _probs_width(self, epoch: int) -> int | None:
        """How many class probabilities per sample `epoch` keeps: all, in the last epoch (within
        FINAL_PROBS_MAX_VALUES); none otherwise."""
        classes = self.dataset.num_classes
        last = epoch == self.config.epochs
        return classes if last and len(self.split) * classes <= FINAL_PROBS_MAX_VALUES else None

    def _report_step(
        self,
        epoch: int,
        step: int,
        state: FitState,
        on_progress: Callable[[Progress], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        """Progress every `progress_every` steps and at the epoch's last; a stop request is
        asked for at every step (`should_stop` must be cheap: the worker's asks the database at
        most once a second), so a cancel takes effect within one batch."""
        if on_progress and (step % self.config.progress_every == 0 or step == self.steps_per_epoch):
            on_progress(self._progress(epoch, step, state))
        if should_stop and should_stop():
            raise AuditCancelled(f"stopped at epoch {epoch}, step {step}")

    def _epoch_dynamics(self, epoch: int, buffers: _EpochBuffers) -> EpochDynamics:
        """The epoch's row per sample, the validation samples scored out of sample at the epoch's end."""
        if len(self.val_index):
            buffers.record(self.val_index, self.forward_dynamics(self.val_index))
        return buffers.to_epoch(epoch, self.split)

    def _result(self, state: FitState) -> TrainResult:
        return TrainResult(
            model=self.model,
            model_name=self.model_name,
            history=DynamicsHistory.stack(state.epochs) if state.epochs else None,
            split=self.split,
            trajectory=torch.stack(state.trajectory).cpu().numpy() if state.trajectory else np.zeros((0, 5)),
            epoch_seconds=state.epoch_seconds,
            device=str(self.device),
            fbr={name: np.stack([e[name] for e in state.fbr]) for name in state.fbr[0]} if state.fbr else None,
            final_probs=self.final_probs,
        )

    def _trajectory_point(self, step: int, epoch: int) -> torch.Tensor:
        head = torch.tensor([step, epoch], dtype=torch.float32, device=self.device)
        return torch.cat([head, self.params.values.detach().clone()])

    def _progress(self, epoch: int, step: int, state: FitState) -> Progress:
        """Progress with an ETA from the pace of this run (a resumed run does not count earlier epochs)."""
        steps_total = self.config.epochs * self.steps_per_epoch
        steps_done = (epoch - 1) * self.steps_per_epoch + step
        steps_this_run = steps_done - (state.start_epoch - 1) * self.steps_per_epoch
        this_run = time.perf_counter() - state.resumed_at
        eta = this_run / steps_this_run * (steps_total - steps_done) if steps_this_run else None
        return Progress(epoch, self.config.epochs, step, self.steps_per_epoch, state.earlier_seconds + this_run, eta)
