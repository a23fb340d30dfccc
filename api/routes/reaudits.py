"""Re-audits of growing datasets: a dataset's schedule, starting a re-audit now, and the report
that compares a re-audit with the audit before it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import AuditQueueDep, CurrentOwner, SessionDep, SettingsDep
from api.presenters import job_public
from api.schemas import (
    ErrorPublic,
    ReauditCreate,
    ReauditPublic,
    ReauditReportPublic,
    ScheduleCreate,
    SchedulePublic,
)
from api.schemas.common import DbId
from core.services import jobs, reaudits, schedules
from core.services.artifacts import job_artifacts
from core.services.audit_options import audit_config
from core.services.backbones import with_backbone_weights

router = APIRouter(
    tags=["re-audits"],
    responses={
        401: {"model": ErrorPublic, "description": "missing or invalid API key"},
        404: {"model": ErrorPublic, "description": "no such dataset, schedule or job of the caller's"},
        422: {"model": ErrorPublic, "description": "invalid request"},
    },
)


@router.put("/datasets/{dataset_id}/schedule")
def set_schedule(
    dataset_id: DbId, body: ScheduleCreate, owner: CurrentOwner, session: SessionDep, settings: SettingsDep
) -> SchedulePublic:
    """Re-audit the dataset on a schedule: a cron expression (UTC) or an interval. Each run
    audits the latest version, unless it is audited already. Training options left out of `audit`
    are those of the dataset's newest succeeded job. Takes effect without a restart."""
    base = reaudits.base_config(session, owner.id, dataset_id)
    schedule = schedules.set_schedule(
        session,
        owner.id,
        dataset_id,
        cron=body.cron,
        interval_seconds=body.interval_seconds,
        config=with_backbone_weights(audit_config(body.audit.training_options(), based_on=base), settings),
        warm_start=body.warm_start,
        enabled=body.enabled,
    )
    return SchedulePublic.model_validate(schedule)


@router.get("/datasets/{dataset_id}/schedule")
def get_schedule(dataset_id: DbId, owner: CurrentOwner, session: SessionDep) -> SchedulePublic:
    return SchedulePublic.model_validate(schedules.get_schedule(session, owner.id, dataset_id))


@router.delete("/datasets/{dataset_id}/schedule", status_code=204)
def delete_schedule(dataset_id: DbId, owner: CurrentOwner, session: SessionDep) -> Response:
    schedules.delete_schedule(session, owner.id, dataset_id)
    return Response(status_code=204)


@router.post(
    "/datasets/{dataset_id}/reaudits",
    responses={503: {"model": ErrorPublic, "description": "the broker is down; the job is stored as failed"}},
)
def start_reaudit(
    dataset_id: DbId, body: ReauditCreate, owner: CurrentOwner, session: SessionDep, audit_queue: AuditQueueDep,
    settings: SettingsDep,
) -> ReauditPublic:
    """Re-audit the dataset's latest version now, compared with its newest succeeded job, whose
    configuration it reuses for the training options `audit` leaves out. Skipped when nothing
    changed, unless forced. With `use_verdicts_as_trusted`, the reviewers' agreed verdicts are
    the audit's trusted set (the job's `result.num_trusted` counts them)."""
    base = reaudits.base_config(session, owner.id, dataset_id)
    options = {} if body.audit is None else body.audit.training_options()
    config = with_backbone_weights(audit_config(options, based_on=base, trusted=body.use_verdicts_as_trusted), settings)
    started = reaudits.start_reaudit(
        session, owner.id, dataset_id, config, warm_start=body.warm_start, force=body.force,
        use_verdicts_as_trusted=body.use_verdicts_as_trusted,
    )
    if started.job is None:
        return ReauditPublic(job=None, skipped=started.skipped)
    audit_queue.submit(session, started.job)
    return ReauditPublic(job=job_public(started.job), skipped=None)


@router.get("/jobs/{job_id}/report")
def reaudit_report(
    job_id: DbId,
    owner: CurrentOwner,
    session: SessionDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=0, le=10_000, description="samples listed per list, most suspicious first")] = 100,
) -> ReauditReportPublic:
    """What changed since the audit this job re-audits: newly / no longer / still suspected
    samples, the new samples, and which samples reviewers decided come back to the queue."""
    job = jobs.get_job(session, owner.id, job_id)
    report = reaudits.reaudit_report(session, job, job_artifacts(settings, job), limit=limit)
    return ReauditReportPublic.model_validate(report)
