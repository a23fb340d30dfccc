"""The relational schema: owners and their API keys, datasets, audit jobs and their results,
reviewers' decisions on suspected mislabels, the review pages' sessions, re-audit schedules and
webhooks; one module per domain, every model importable from here.

The schema changes only through the Alembic migrations in `migrations/`; these models describe it
for the ORM and are checked against the migrations by the tests. Every table that belongs to a
job references it with ON DELETE CASCADE, but for `sample_epochs` (see `SampleEpoch`).
"""

from core.statuses import DeliveryStatus, JobStatus
from core.store.models.base import Base, utcnow
from core.store.models.datasets import ApiKey, Dataset, DatasetVersion, Owner, Sample
from core.store.models.jobs import AuditJob, JobMetric, LilawTrajectoryPoint, SampleEpoch, SampleScore
from core.store.models.reviews import Decision
from core.store.models.schedules import AuditSchedule
from core.store.models.team import Adjudication, Adjudicator, Assignment, DecisionComment
from core.store.models.sessions import UiSession
from core.store.models.webhooks import DatasetWebhook, WebhookDelivery

__all__ = [
    "Adjudication",
    "Adjudicator",
    "ApiKey",
    "Assignment",
    "AuditJob",
    "AuditSchedule",
    "Base",
    "Dataset",
    "DatasetVersion",
    "DatasetWebhook",
    "Decision",
    "DecisionComment",
    "DeliveryStatus",
    "JobMetric",
    "JobStatus",
    "LilawTrajectoryPoint",
    "Owner",
    "Sample",
    "SampleEpoch",
    "SampleScore",
    "UiSession",
    "WebhookDelivery",
    "utcnow",
]
