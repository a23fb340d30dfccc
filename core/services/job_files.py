"""The files a worker writes for a job, named in `AuditJob.result_paths` (absolute, or relative to
the data dir): the labels a job with injected noise trained on, and the trained model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.services import ConflictError
from core.store.models import AuditJob


@dataclass(frozen=True)
class JobLabels:
    """The labels a job's model trained on (after injected noise) and the known flags."""

    labels: np.ndarray  # int64 [N], by sample_index
    is_mislabeled: np.ndarray  # bool [N]
    true_labels: np.ndarray  # int64 [N], the labels before the noise


def read_job_labels(path: str | Path) -> JobLabels:
    """The labels file of a job with injected noise (`result_paths["labels"]`)."""
    with np.load(path, allow_pickle=False) as stored:
        return JobLabels(stored["labels"], stored["is_mislabeled"], stored["true_labels"])


def job_file(job: AuditJob, name: str, data_dir: Path) -> Path | None:
    """Where the worker wrote the file `name` of the job; None when it recorded none."""
    stored = (job.result_paths or {}).get(name)
    return data_dir / stored if stored else None


def job_labels(job: AuditJob, data_dir: Path) -> JobLabels | None:
    """The labels and known flags a job with injected noise trained on; None for other jobs."""
    path = job_file(job, "labels", data_dir)
    if path is None:
        return None
    if not path.is_file():
        raise ConflictError(f"the labels file of job {job.id} is missing ({path})")
    return read_job_labels(path)
