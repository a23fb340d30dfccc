"""Request (`XCreate`) and response (`XPublic`) bodies of the API, one module per resource.

Every score is oriented higher = more suspicious; `orientation` fields say what each one is.
The modules import only pydantic, the standard library and core's light modules, so the
light client (`api.client`) can import them; `api.presenters` builds responses from domain objects.
"""

from __future__ import annotations

from api.schemas.common import ErrorPublic, SplitName
from api.schemas.datasets import (
    AppendPublic,
    BuiltinDatasetCreate,
    DatasetPublic,
    DatasetUploadForm,
    DatasetVersionPublic,
    FlagCreate,
    FlagsPublic,
    RelabelPublic,
    VersionDiffPublic,
)
from api.schemas.jobs import AuditSettings, JobCreate, JobPublic, ProgressPublic, TrajectoryPointPublic
from api.schemas.reaudits import (
    ReauditCreate,
    ReauditPublic,
    ReauditReportPublic,
    ReportedSamplePublic,
    ScheduleCreate,
    SchedulePublic,
)
from api.schemas.results import (
    CurvesPublic,
    DetectionChartsPublic,
    DetectionPublic,
    EpochDetectionPublic,
    EpochDynamicsPublic,
    HistogramPublic,
    JobMetricsPublic,
    SampleDynamicsPublic,
    ScoreMetricsPublic,
    SuspectPagePublic,
    SuspectPublic,
)
from api.schemas.review import (
    ClassProbabilityPublic,
    DecisionCreate,
    DecisionPublic,
    DecisionSummaryPublic,
    JobDecisionsPublic,
    QueueItemPublic,
    ReviewProgressPublic,
    ReviewQueuePublic,
    SampleDecisionsPublic,
    WeightHistoryPublic,
)
from api.schemas.webhooks import DeliveryPublic, WebhookCreate, WebhookCreated, WebhookPublic

__all__ = [
    "AppendPublic",
    "AuditSettings",
    "BuiltinDatasetCreate",
    "ClassProbabilityPublic",
    "CurvesPublic",
    "DatasetPublic",
    "DatasetUploadForm",
    "DatasetVersionPublic",
    "DecisionCreate",
    "DecisionPublic",
    "DecisionSummaryPublic",
    "DeliveryPublic",
    "DetectionChartsPublic",
    "DetectionPublic",
    "EpochDetectionPublic",
    "EpochDynamicsPublic",
    "ErrorPublic",
    "FlagCreate",
    "FlagsPublic",
    "HistogramPublic",
    "JobCreate",
    "JobDecisionsPublic",
    "JobMetricsPublic",
    "JobPublic",
    "ProgressPublic",
    "QueueItemPublic",
    "ReauditCreate",
    "ReauditPublic",
    "ReauditReportPublic",
    "RelabelPublic",
    "ReportedSamplePublic",
    "ReviewProgressPublic",
    "ReviewQueuePublic",
    "SampleDecisionsPublic",
    "SampleDynamicsPublic",
    "ScheduleCreate",
    "SchedulePublic",
    "ScoreMetricsPublic",
    "SplitName",
    "SuspectPagePublic",
    "SuspectPublic",
    "TrajectoryPointPublic",
    "VersionDiffPublic",
    "WebhookCreate",
    "WebhookCreated",
    "WebhookPublic",
    "WeightHistoryPublic",
]
