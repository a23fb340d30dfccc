"""The trained model's most probable classes for every sample of a job, shown to reviewers.

Computed once, on the CPU of the process that asks first, from the job's stored model and
dataset (normalised as in training), and kept next to the model as `top_classes.npz`.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from core.audit import AuditConfig
from core.dataset import AuditDataset
from core.engine import Trainer
from core.services.job_files import job_file
from core.services.previews import DatasetLoader
from core.store.models import AuditJob

TOP_K = 3
TOP_CLASSES_FILE = "top_classes.npz"

_compute_lock = threading.Lock()


@dataclass(frozen=True)
class TopClasses:
    classes: np.ndarray  # int64 [N, k], most probable first
    probabilities: np.ndarray  # float32 [N, k]


def top_classes(job: AuditJob, data_dir: Path, load: DatasetLoader) -> TopClasses | None:
    """The `TOP_K` most probable classes of every sample under the job's trained model; None
    when the job has no trained model."""
    model_path = job_file(job, "model", data_dir)
    if model_path is None or not model_path.is_file():
        return None
    path = model_path.with_name(TOP_CLASSES_FILE)
    if not path.is_file():
        with _compute_lock:
            if not path.is_file():
                _write_atomically(path, _compute(job, model_path, load()))
    with np.load(path, allow_pickle=False) as stored:
        return TopClasses(classes=stored["classes"], probabilities=stored["probabilities"])


def _compute(job: AuditJob, model_path: Path, dataset: AuditDataset) -> TopClasses:
    config = replace(
        AuditConfig.from_dict(job.config), inject_noise=None, pretrained=False, weights_path=None, device="cpu"
    )
    trainer = Trainer(dataset, config)
    trainer.model.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
    probabilities = trainer.predict_proba()
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :TOP_K]
    return TopClasses(classes=order, probabilities=np.take_along_axis(probabilities, order, axis=1))


def _write_atomically(path: Path, top: TopClasses) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with open(partial, "wb") as file:
        np.savez(file, classes=top.classes, probabilities=top.probabilities)
    os.replace(partial, path)
