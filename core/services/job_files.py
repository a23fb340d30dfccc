"""The files a worker writes for a job, named in `AuditJob.result_paths` (absolute, or relative to
the data dir): the labels a job with injected noise trained on, and the trained model."""

from __future__ import annotations

from pathlib import Path

from core.services import ConflictError
from core.services.audit_runs import JobLabels, read_job_labels
from core.store.models import AuditJob


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
