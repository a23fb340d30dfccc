"""The relational schema: owners and their API keys, datasets, audit jobs and their results, and
reviewers' decisions on suspected mislabels.

The schema changes only through the Alembic migrations in `migrations/`; these models describe it
for the ORM and are checked against the migrations by the tests.

`sample_epochs` holds one row per sample per epoch of every job (10^7 rows for a large job). On
Postgres it is LIST-partitioned by `job_id`, one partition per job (see `core.store.partitions`),
so a job's dynamics are written, read and dropped without touching any other job's rows.
Every other table that belongs to a job references it with ON DELETE CASCADE.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    REAL,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import JSON, TypeDecorator

from core.scores import SCORE_NAMES
from core.verdicts import Verdict, outcome, verdict_flag

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONDocument = JSON().with_variant(postgresql.JSONB(), "postgresql")

# The per-sample score columns of `sample_scores`, one nullable REAL column each (the migrations
# spell them out; tests/store checks that models and migrations agree).
SCORE_COLUMNS = SCORE_NAMES


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSONDocument}


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


def _created_at() -> Mapped[datetime]:
    return mapped_column(default=utcnow, server_default=func.now())


def _status_enum(statuses: type[StrEnum]) -> Enum:
    """A status column: its values stored as short strings (a CHECK constraint in the migration
    lists them), not as a database enum type."""
    return Enum(
        statuses,
        native_enum=False,
        create_constraint=False,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class Owner(Base):
    __tablename__ = "owners"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = _created_at()

    api_keys: Mapped[list[ApiKey]] = relationship(
        back_populates="owner", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )
    datasets: Mapped[list[Dataset]] = relationship(
        back_populates="owner", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class ApiKey(Base):
    """An API key of an owner. Only `key_hash` (hex sha256 of the key) is stored, never the key;
    `prefix` is its first characters, kept to tell keys apart in listings. `reviewer` names the
    person using the key, so that two reviewers of one owner are told apart (default: the owner)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reviewer: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = _created_at()
    revoked_at: Mapped[datetime | None]

    owner: Mapped[Owner] = relationship(back_populates="api_keys", lazy="raise")


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()

    owner: Mapped[Owner] = relationship(back_populates="datasets", lazy="raise")
    versions: Mapped[list[DatasetVersion]] = relationship(
        back_populates="dataset",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="DatasetVersion.version",
    )


class DatasetVersion(Base):
    """One version of a dataset: the stored blob (content-addressed by `blob_sha256`, kept at
    `blob_uri`, a path under the data dir or an object store URL) and what was read from it.
    Versions are immutable; appending samples or applying relabels writes a new one."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    version: Mapped[int]
    blob_sha256: Mapped[str] = mapped_column(String(64))
    blob_uri: Mapped[str] = mapped_column(String(2048))
    format: Mapped[str] = mapped_column(String(32))
    modality: Mapped[str] = mapped_column(String(16))
    num_samples: Mapped[int]
    num_classes: Mapped[int]
    class_names: Mapped[list[str]] = mapped_column(JSONDocument)
    # The version this one was made from (append, relabel) and what changed (the `change`
    # dicts of `core.services.versions`). NULL for an upload of a whole dataset.
    parent_version: Mapped[int | None]
    change: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = _created_at()

    dataset: Mapped[Dataset] = relationship(back_populates="versions", lazy="raise")
    samples: Mapped[list[Sample]] = relationship(
        back_populates="dataset_version", lazy="raise", cascade="all, delete-orphan", passive_deletes=True
    )


class Sample(Base):
    """A sample of a dataset version: its position (`sample_index`, 0..N-1), its stable id (the
    same sample keeps its id across versions), its given label (an index into `class_names`) and
    the sha256 of its content as loaded (`core.dataset.content_hashes`), which finds
    exact duplicates among appended samples."""

    __tablename__ = "samples"
    __table_args__ = (UniqueConstraint("dataset_version_id", "sample_id"),)

    dataset_version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), primary_key=True
    )
    sample_index: Mapped[int] = mapped_column(primary_key=True)
    sample_id: Mapped[str] = mapped_column(String(255))
    label: Mapped[int]
    is_mislabeled: Mapped[bool | None] = mapped_column(Boolean)
    content_hash: Mapped[str | None] = mapped_column(String(64))

    dataset_version: Mapped[DatasetVersion] = relationship(back_populates="samples", lazy="raise")


class AuditJob(Base):
    """One audit of a dataset version. `result_paths` names the stored artifacts (e.g. the trained
    model file); `result` holds the run's summary, classifier metrics included."""

    __tablename__ = "audit_jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("owners.id", ondelete="CASCADE"), index=True)
    dataset_version_id: Mapped[int] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="CASCADE"), index=True
    )
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[JobStatus] = mapped_column(_status_enum(JobStatus), default=JobStatus.QUEUED, index=True)
    epoch: Mapped[int] = mapped_column(default=0)
    total_epochs: Mapped[int | None]
    step: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int | None]
    eta_seconds: Mapped[float | None] = mapped_column(Double)
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = _created_at()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    celery_task_id: Mapped[str | None] = mapped_column(String(155))
    result_paths: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    # A re-audit: the earlier job of the dataset it is compared with (and, with `warm_start`,
    # starts from), and the schedule that started it, if any.
    previous_job_id: Mapped[int | None] = mapped_column(ForeignKey("audit_jobs.id", ondelete="SET NULL"))
    warm_start: Mapped[bool] = mapped_column(default=False, server_default=false())
    schedule_id: Mapped[int | None] = mapped_column(ForeignKey("audit_schedules.id", ondelete="SET NULL"))

    owner: Mapped[Owner] = relationship(lazy="raise")
    dataset_version: Mapped[DatasetVersion] = relationship(lazy="raise")


class SampleEpoch(Base):
    """The dynamics of one sample in one epoch of a job (see `core.dynamics.EpochDynamics`).
    Float columns are NULL where the engine produced NaN.

    `job_id` has no foreign key: checking one on every row triples the cost of a bulk write on
    Postgres. Instead the writer checks the job once per epoch, and a trigger on `audit_jobs`
    removes a deleted job's rows (drops its partition on Postgres)."""

    __tablename__ = "sample_epochs"
    __table_args__ = {"postgresql_partition_by": "LIST (job_id)"}

    job_id: Mapped[int] = mapped_column(primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    sample_index: Mapped[int] = mapped_column(primary_key=True)
    split: Mapped[int] = mapped_column(SmallInteger)
    w_alpha: Mapped[float | None] = mapped_column(REAL)
    w_beta: Mapped[float | None] = mapped_column(REAL)
    w_delta: Mapped[float | None] = mapped_column(REAL)
    w: Mapped[float | None] = mapped_column(REAL)
    loss: Mapped[float | None] = mapped_column(REAL)
    p_label: Mapped[float | None] = mapped_column(REAL)
    p_max: Mapped[float | None] = mapped_column(REAL)
    predicted: Mapped[int] = mapped_column(Integer)
    margin: Mapped[float | None] = mapped_column(REAL)
    el2n: Mapped[float | None] = mapped_column(REAL)


class LilawTrajectoryPoint(Base):
    """α, β, δ after a meta step; `step` counts the training steps within `epoch` (0 = epoch start)."""

    __tablename__ = "lilaw_trajectory"

    job_id: Mapped[int] = mapped_column(ForeignKey("audit_jobs.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(primary_key=True)
    step: Mapped[int] = mapped_column(primary_key=True)
    alpha: Mapped[float] = mapped_column(Double)
    beta: Mapped[float] = mapped_column(Double)
    delta: Mapped[float] = mapped_column(Double)


class SampleScore(Base):
    """Every score of one sample for a job, higher = more suspicious (see `core.scores`), and the
    sample's rank under the job's default score (1 = most suspicious, unique within the job)."""

    __tablename__ = "sample_scores"
    __table_args__ = (Index("ix_sample_scores_job_id_rank", "job_id", "rank", unique=True),)

    job_id: Mapped[int] = mapped_column(ForeignKey("audit_jobs.id", ondelete="CASCADE"), primary_key=True)
    sample_index: Mapped[int] = mapped_column(primary_key=True)
    rank: Mapped[int]
    default_score: Mapped[float] = mapped_column(REAL)
    w_alpha: Mapped[float | None] = mapped_column(REAL)
    w_beta: Mapped[float | None] = mapped_column(REAL)
    w_delta: Mapped[float | None] = mapped_column(REAL)
    w: Mapped[float | None] = mapped_column(REAL)
    aum: Mapped[float | None] = mapped_column(REAL)
    datamaps_confidence: Mapped[float | None] = mapped_column(REAL)
    datamaps_variability: Mapped[float | None] = mapped_column(REAL)
    dataiq_aleatoric: Mapped[float | None] = mapped_column(REAL)
    el2n: Mapped[float | None] = mapped_column(REAL)
    loss: Mapped[float | None] = mapped_column(REAL)
    forgetting: Mapped[float | None] = mapped_column(REAL)
    cl_self_confidence: Mapped[float | None] = mapped_column(REAL)
    cl_normalized_margin: Mapped[float | None] = mapped_column(REAL)

    def scores(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in SCORE_COLUMNS}


class JobMetric(Base):
    """Detection quality of one score of a job against the known flags: for one epoch, or
    aggregated over epochs when `epoch` is NULL; over the samples selected by `split`
    ('all', 'train', ...). `precision_at_k` / `recall_at_k` map k to the value. `created_at` tells
    whether reviewers' decisions changed the known flags since the metrics were computed."""

    __tablename__ = "job_metrics"
    __table_args__ = (Index("ix_job_metrics_job_id_score", "job_id", "score"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("audit_jobs.id", ondelete="CASCADE"))
    score: Mapped[str] = mapped_column(String(64))
    epoch: Mapped[int | None]
    split: Mapped[str] = mapped_column(String(16), default="all")
    auroc: Mapped[float | None] = mapped_column(Double)
    auprc_mislabeled: Mapped[float | None] = mapped_column(Double)
    auprc_clean: Mapped[float | None] = mapped_column(Double)
    precision_at_k: Mapped[dict[str, Any] | None]
    recall_at_k: Mapped[dict[str, Any] | None]
    num_mislabeled: Mapped[int | None]
    created_at: Mapped[datetime] = _created_at()


class Decision(Base):
    """A reviewer's verdict on one sample of a dataset, made while reviewing a job's suspects.

    It belongs to the sample's stable id, so it stays attached across dataset versions, and keeps
    the job it was made in (NULL once that job is deleted). `given_label` is the class name it
    judged and `label` the corrected one (relabel only): see `core.verdicts`. Undoing a decision
    stamps `undone_at`; a reviewer's newest decision on a sample that is not undone is the one
    that counts, so undoing a change of mind brings the earlier decision back."""

    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint("verdict IN ('keep', 'relabel', 'remove')", name="verdict"),
        CheckConstraint("(verdict = 'relabel') = (label IS NOT NULL)", name="relabel_has_label"),
        Index("ix_decisions_dataset_id_sample_id", "dataset_id", "sample_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    sample_id: Mapped[str] = mapped_column(String(255))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("audit_jobs.id", ondelete="SET NULL"), index=True)
    reviewer: Mapped[str] = mapped_column(String(100))
    verdict: Mapped[Verdict] = mapped_column(
        Enum(
            Verdict,
            native_enum=False,
            create_constraint=False,
            length=16,
            values_callable=lambda verdicts: [verdict.value for verdict in verdicts],
        )
    )
    given_label: Mapped[str] = mapped_column(String(255))
    label: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = _created_at()
    undone_at: Mapped[datetime | None]

    def flag_for(self, label: str) -> bool | None:
        """Whether `label` is mislabeled according to this decision (None: not judged)."""
        return verdict_flag(self.verdict, self.given_label, self.label, label)

    @property
    def outcome(self) -> str:
        return outcome(self.verdict, self.given_label, self.label)


class AuditSchedule(Base):
    """When a dataset is re-audited: every `interval_seconds`, or at the times of a five-field
    `cron` expression (UTC), exactly one of the two. Beat's periodic task starts the schedules
    whose `next_run_at` has come (`core.services.schedules`); a run that finds the dataset's latest
    version audited already is skipped, unless forced. Its jobs point back at it (`schedule_id`).
    `config` is the re-audits' `AuditConfig` (as a dict)."""

    __tablename__ = "audit_schedules"
    __table_args__ = (
        CheckConstraint("(cron IS NULL) <> (interval_seconds IS NULL)", name="one_timing"),
        Index("ix_audit_schedules_next_run_at", "next_run_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), unique=True)
    cron: Mapped[str | None] = mapped_column(String(120))
    interval_seconds: Mapped[int | None]
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    warm_start: Mapped[bool] = mapped_column(default=False)
    enabled: Mapped[bool] = mapped_column(default=True)
    next_run_at: Mapped[datetime]
    last_run_at: Mapped[datetime | None]
    last_outcome: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, server_default=func.now())


class DatasetWebhook(Base):
    """The URL called when a re-audit of the dataset finishes, and the secret its calls are
    signed with (HMAC-SHA256, see `core.services.webhooks`). The secret is stored as given: the
    server needs it to sign."""

    __tablename__ = "dataset_webhooks"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = _created_at()


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookDelivery(Base):
    """One event to deliver to a dataset's webhook, retried with backoff until the receiver
    answers 2xx or the attempts run out. `payload` is the JSON body, as sent."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("audit_jobs.id", ondelete="SET NULL"))
    event: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[dict[str, Any]]
    status: Mapped[DeliveryStatus] = mapped_column(_status_enum(DeliveryStatus), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    delivered_at: Mapped[datetime | None]
