"""/jobs: submit an audit, follow its progress and α/β/δ trajectory, list jobs, cancel one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import AuditQueueDep, CurrentOwner, SessionDep, SettingsDep
from api.presenters import job_public
from api.schemas import ErrorPublic, JobCreate, JobPublic
from api.schemas.common import DbId
from core.services import jobs
from core.services.audit_options import audit_config
from core.services.backbones import with_backbone_weights
from core.statuses import JobStatus


def job_lookup_errors(missing: str = "job") -> dict[int | str, dict[str, Any]]:
    """The errors of a route that looks up one of the caller's jobs (`missing`: what may be
    missing), for its router's `responses`."""
    return {
        401: {"model": ErrorPublic, "description": "missing or invalid API key"},
        404: {"model": ErrorPublic, "description": f"no such {missing} of the caller's"},
        422: {"model": ErrorPublic, "description": "invalid request"},
    }


router = APIRouter(prefix="/jobs", tags=["jobs"], responses=job_lookup_errors("job (or dataset)"))


@router.post(
    "",
    status_code=201,
    responses={503: {"model": ErrorPublic, "description": "the broker is down; the job is stored as failed"}},
)
def submit_audit(
    body: JobCreate, owner: CurrentOwner, session: SessionDep, audit_queue: AuditQueueDep, settings: SettingsDep
) -> JobPublic:
    """Queue an audit of a dataset version (the latest by default)."""
    config = with_backbone_weights(audit_config(body.training_options()), settings)
    job = jobs.create_job(session, owner.id, body.dataset_id, body.version, config)
    audit_queue.submit(session, job)
    return job_public(job)


@router.get("")
def list_jobs(
    owner: CurrentOwner,
    session: SessionDep,
    dataset_id: DbId | None = None,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[JobPublic]:
    """The caller's jobs, newest first."""
    found = jobs.list_jobs(session, owner.id, dataset_id=dataset_id, status=status, limit=limit)
    return [job_public(job) for job in found]


@router.get("/{job_id}")
def get_job(
    job_id: DbId,
    owner: CurrentOwner,
    session: SessionDep,
    trajectory: Annotated[bool, Query(description="include the α/β/δ trajectory")] = True,
    max_points: Annotated[
        int, Query(ge=2, le=100_000, description="downsample the trajectory to this many points")
    ] = 500,
) -> JobPublic:
    """Status, progress, heartbeat, error, timings and the α/β/δ trajectory of a job."""
    job = jobs.get_job(session, owner.id, job_id)
    points = jobs.trajectory(session, job.id, max_points) if trajectory else None
    return job_public(job, points)


@router.post("/{job_id}/cancel", responses={409: {"model": ErrorPublic, "description": "the job has already ended"}})
def cancel_job(job_id: DbId, owner: CurrentOwner, session: SessionDep) -> JobPublic:
    """Cancel a queued or running job; the worker stops at its next progress tick."""
    return job_public(jobs.cancel_job(session, owner.id, job_id))
