"""Re-audits of growing datasets: a dataset's schedule, starting a re-audit now, and the report
comparing a re-audit with the audit before it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from api.schemas.common import Schema
from api.schemas.jobs import AuditSettings, JobPublic
from core.column_ranges import INT32_MAX


class ScheduleCreate(Schema):
    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(None, max_length=120, description="five-field cron expression, UTC", examples=["0 3 * * 1"])
    interval_seconds: int | None = Field(
        None, ge=60, le=INT32_MAX, description="instead of cron: run every so many seconds"
    )
    warm_start: bool = Field(False, description="start each re-audit from the previous job's model")
    enabled: bool = True
    audit: AuditSettings = Field(
        default_factory=AuditSettings,
        description="how the re-audits train; options left out are those of the dataset's newest succeeded job",
    )


class SchedulePublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    dataset_id: int
    cron: str | None
    interval_seconds: int | None
    warm_start: bool
    enabled: bool
    config: dict[str, Any]
    next_run_at: datetime
    last_run_at: datetime | None
    last_outcome: str | None = Field(description="the last run: the job it started, or why it skipped")
    created_at: datetime
    updated_at: datetime


class ReauditCreate(Schema):
    model_config = ConfigDict(extra="forbid")

    force: bool = Field(False, description="re-audit even if the latest version is audited already")
    warm_start: bool = Field(False, description="start from the previous job's model (fewer epochs suffice)")
    use_verdicts_as_trusted: bool = Field(
        False,
        description="train with the reviewers' agreed verdicts as the trusted set: every sample whose reviewers "
        "agree on its label (kept, or relabelled: the corrected label) is held out as LiLAW's meta-validation "
        "split with that label, and is FBR's clean subset (weighting 'fbr' needs it); a decision made since the "
        "last audit counts as a change",
    )
    audit: AuditSettings | None = Field(
        None, description="training options to change; the others are those of the previous job"
    )


class ReauditPublic(Schema):
    job: JobPublic | None = Field(description="the re-audit queued; null when skipped")
    skipped: str | None = Field(description="why nothing was queued")


class ReportedSamplePublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    sample_id: str
    sample_index: int
    rank: int | None
    previous_rank: int | None
    is_mislabeled: bool | None


class ReauditReportPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    job_id: int
    previous_job_id: int | None
    version: int
    previous_version: int | None
    num_samples: int
    num_suspected: int = Field(description="samples whose AUM is negative (see core.services.reaudits)")
    counts: dict[str, int]
    samples: dict[str, list[ReportedSamplePublic]] = Field(
        description="per list, its most suspicious samples: newly_suspected, no_longer_suspected, "
        "still_suspected, new_samples, new_suspected, reopened"
    )
