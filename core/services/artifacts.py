"""The files the worker writes for a job, behind one interface (`JobArtifacts`) so that a store
other than the local data dir can hold them: the labels a job with injected noise trains on, the
training checkpoint, the trained model, every sample's class probabilities at the end of the run,
and (for older jobs, computed on demand) the model's top classes of every sample.

`AuditJob.result_paths` records the labels, the model and the probabilities
(`JobArtifacts.names`); readers find them by that record only, so a job's files count once the
job has recorded them. Locally the names are paths relative to the data dir (absolute for some
older jobs); the checkpoint lives in the job's directory and the top classes next to the model,
unrecorded.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import torch

from core import checkpoints
from core.audit import NoisyLabels
from core.services import ConflictError
from core.settings import Settings
from core.store.models import AuditJob

JOBS_DIR = "jobs"  # under the data dir, as `Settings.job_dir`
LABELS_FILE = "labels.npz"
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"
TOP_CLASSES_FILE = "top_classes.npz"
PROBABILITIES_FILE = "probabilities.npz"

ModelState = dict[str, torch.Tensor]


@dataclass(frozen=True)
class TopClasses:
    classes: np.ndarray  # int64 [N, k], most probable first
    probabilities: np.ndarray  # float32 [N, k]


@dataclass(frozen=True)
class ClassProbabilities:
    """Every sample's class probabilities from the audit itself, by sample index."""

    final: np.ndarray  # float32 [N, C]: behind the last epoch's predicted labels (their argmax)
    out_of_sample: np.ndarray | None  # float32 [N, C]: the cross-fitted models', when the audit ran them


class JobArtifacts(Protocol):
    """The files of one job."""

    names: dict[str, str]  # what `AuditJob.result_paths` holds, updated by every write

    def write_labels(self, labels: NoisyLabels) -> None: ...

    def read_labels(self) -> NoisyLabels | None:
        """The labels of a job with injected noise; None for other jobs. Raises ConflictError
        when the recorded labels are gone."""

    def write_model(self, state: ModelState) -> None: ...

    def read_model(self) -> ModelState | None:
        """The trained model's state dict on the CPU; None when the job has no model."""

    def model_file(self) -> Path | None:
        """A local file holding the trained model (what a download sends); None when there is none."""

    def checkpoint_path(self) -> Path:
        """Where the engine checkpoints the job's training; it writes and reads the file itself."""

    def remove_checkpoint(self) -> None: ...

    def write_top_classes(self, top: TopClasses) -> None:
        """Store the top classes computed from the job's model."""

    def read_top_classes(self) -> TopClasses | None: ...

    def write_probabilities(self, probabilities: ClassProbabilities) -> None: ...

    def read_probabilities(self) -> ClassProbabilities | None:
        """The audit's class probabilities; None for a job that stored none (older jobs)."""


def job_artifacts(settings: Settings, job: AuditJob) -> JobArtifacts:
    """The artifacts of `job`, where this service keeps them."""
    return LocalJobArtifacts(settings.data_dir, job)


class LocalJobArtifacts:
    """A job's files under `<data dir>/jobs/<job id>/`, each written atomically."""

    def __init__(self, data_dir: Path, job: AuditJob):
        self.data_dir = data_dir
        self.job_id = job.id
        self.directory = data_dir / JOBS_DIR / str(job.id)
        self.names = dict(job.result_paths or {})

    def recorded_file(self, name: str) -> Path | None:
        """The path recorded as `name` ("labels", "model"), whether or not the file exists."""
        stored = self.names.get(name)
        return self.data_dir / stored if stored else None

    def write_labels(self, labels: NoisyLabels) -> None:
        def write(file: BinaryIO) -> None:
            np.savez(file, labels=labels.labels, is_mislabeled=labels.is_mislabeled, true_labels=labels.true_labels)

        self._write("labels", LABELS_FILE, write)

    def read_labels(self) -> NoisyLabels | None:
        path = self.recorded_file("labels")
        if path is None:
            return None
        if not path.is_file():
            raise ConflictError(f"the labels file of job {self.job_id} is missing ({path})")
        with np.load(path, allow_pickle=False) as stored:
            return NoisyLabels(stored["labels"], stored["is_mislabeled"], stored["true_labels"])

    def write_model(self, state: ModelState) -> None:
        self._write("model", MODEL_FILE, lambda file: torch.save(state, file))

    def read_model(self) -> ModelState | None:
        path = self.model_file()
        return None if path is None else torch.load(path, map_location="cpu", weights_only=True)

    def model_file(self) -> Path | None:
        path = self.recorded_file("model")
        return path if path is not None and path.is_file() else None

    def checkpoint_path(self) -> Path:
        return self.directory / CHECKPOINT_FILE

    def remove_checkpoint(self) -> None:
        checkpoints.remove_checkpoint(self.checkpoint_path())

    def write_top_classes(self, top: TopClasses) -> None:
        write_atomically(
            self._top_classes_file(),
            lambda file: np.savez(file, classes=top.classes, probabilities=top.probabilities),
        )

    def read_top_classes(self) -> TopClasses | None:
        path = self._top_classes_file()
        if path is None or not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as stored:
            return TopClasses(classes=stored["classes"], probabilities=stored["probabilities"])

    def write_probabilities(self, probabilities: ClassProbabilities) -> None:
        arrays = {"final": probabilities.final.astype(np.float32, copy=False)}
        if probabilities.out_of_sample is not None:
            arrays["out_of_sample"] = probabilities.out_of_sample.astype(np.float32, copy=False)
        self._write("probabilities", PROBABILITIES_FILE, lambda file: np.savez(file, **arrays))

    def read_probabilities(self) -> ClassProbabilities | None:
        path = self.recorded_file("probabilities")
        if path is None or not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as stored:
            return ClassProbabilities(
                final=stored["final"], out_of_sample=stored["out_of_sample"] if "out_of_sample" in stored else None
            )

    def _top_classes_file(self) -> Path | None:
        model = self.recorded_file("model")
        return None if model is None else model.with_name(TOP_CLASSES_FILE)

    def _write(self, name: str, file_name: str, write: Callable[[BinaryIO], None]) -> None:
        path = self.directory / file_name
        write_atomically(path, write)
        self.names[name] = path.relative_to(self.data_dir).as_posix()


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write a file under a name of this process's and rename it into place: readers, and other
    processes writing the same file, see it whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    with open(partial, "wb") as file:
        write(file)
    os.replace(partial, path)
