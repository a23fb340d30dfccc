"""The trained model's most probable classes for every sample of a job, shown to reviewers.

They come from the class probabilities the audit itself stored at the end of its run (the array
whose argmax is the job's predicted labels), so the suggestion a reviewer applies is the audit's
own prediction: same model state, same preprocessing.

Older jobs stored no probabilities: theirs are computed once, on the CPU of the process that asks
first, from the job's stored model and dataset (normalised as in training, the model in eval
mode), and kept with the job's artifacts. Those can disagree with the audit's predicted labels
(train-mode against eval-mode batch norm statistics).
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from core.audit import AuditConfig
from core.dataset import AuditDataset
from core.engine import Trainer
from core.services.artifacts import JobArtifacts, ModelState, TopClasses
from core.services.previews import DatasetLoader
from core.store.models import AuditJob

TOP_K = 3

_compute_lock = threading.Lock()


def top_classes(job: AuditJob, artifacts: JobArtifacts, load: DatasetLoader) -> TopClasses | None:
    """The `TOP_K` most probable classes of every sample under the job's trained model; None
    when the job has no trained model."""
    if artifacts.model_file() is None:
        return None
    stored = artifacts.read_probabilities()
    if stored is not None:
        return most_probable(stored.final)
    top = artifacts.read_top_classes()
    if top is None:
        with _compute_lock:
            top = artifacts.read_top_classes()
            if top is None:
                top = _compute(job, artifacts.read_model(), load())
                artifacts.write_top_classes(top)
    return top


def most_probable(probabilities: np.ndarray, k: int = TOP_K) -> TopClasses:
    """The `k` most probable classes of every row, most probable first; ties go to the lower
    class index, as the engine's argmax does (so the first is the row's predicted label)."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return TopClasses(classes=order, probabilities=np.take_along_axis(probabilities, order, axis=1))


def _compute(job: AuditJob, model: ModelState, dataset: AuditDataset) -> TopClasses:
    config = replace(
        AuditConfig.from_dict(job.config), inject_noise=None, pretrained=False, weights_path=None, device="cpu"
    )
    trainer = Trainer(dataset, config)
    trainer.model.load_state_dict(model)
    return most_probable(trainer.predict_proba())
