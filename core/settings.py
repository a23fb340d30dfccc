"""Service settings, read once from the environment (prefix LILAW_; the two URLs also without it).

The defaults are the embedded mode: a SQLite database, Celery over kombu's SQLAlchemy transport
on another SQLite file, and blobs under a local data dir — nothing to install beyond pip.
Production sets DATABASE_URL (postgresql+psycopg://...), CELERY_BROKER_URL (redis://...) and a
data dir shared by the API and every worker.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LILAW_", extra="ignore")

    data_dir: Path = Path("./lilaw-data")
    database_url: str | None = Field(default=None, validation_alias=AliasChoices("LILAW_DATABASE_URL", "DATABASE_URL"))
    broker_url: str | None = Field(default=None, validation_alias=AliasChoices("LILAW_BROKER_URL", "CELERY_BROKER_URL"))

    max_upload_bytes: int = 2 * 1024**3
    max_decoded_pixels: int = 80_000_000  # about 240 MB decoded as RGB (see core.loaders.limits)
    audit_queue: str = "audit"
    # API processes `lilaw-audit up` starts (uvicorn --workers): one process serves its sync
    # routes from one interpreter lock, so a second uses the second core (docs/benchmarks.md,
    # "Read routes under 20 concurrent users").
    api_workers: int = Field(default=2, ge=1, le=64)
    # Uploads up to this size are ingested (parsed, checked, hashed, stored) inside their
    # request (201); larger ones by the ingest task on its own queue (202, then poll the dataset).
    inline_ingest_max_bytes: int = 8 * 1024**2
    # A job longer than this is stopped (soft limit; the hard limit is 1.2x). On Redis the
    # visibility timeout is set above the hard limit, so a running job is never redelivered.
    job_soft_time_limit_s: int = 24 * 3600
    # A running job refreshes its heartbeat every `heartbeat_interval_s` (default: a sixth of the
    # timeout); one silent for `heartbeat_timeout_s` is re-queued by the reaper (worker.tasks),
    # which runs every `reap_interval_s` (default: a third of the timeout), and failed after its
    # last allowed attempt. With the defaults a killed worker's job is back in the queue within
    # 40 s of its last heartbeat.
    heartbeat_timeout_s: int = Field(default=30, ge=3)
    heartbeat_interval_s: float | None = Field(default=None, gt=0)
    reap_interval_s: float | None = Field(default=None, gt=0)
    # An ingest task touches its heartbeat file every sixth of `ingest_stale_s`; an ingesting
    # version whose heartbeat is older is sent again once by the ingest reaper, which runs every
    # third of it, then failed (`core.services.ingest_reaper`).
    ingest_stale_s: int = Field(default=120, ge=3)
    # A queued job, or an ingest that has not started, still waiting after `resend_waiting_after_s`
    # has its task sent once more by the reapers: a broker that restarts without persistence (a
    # Redis with no AOF) loses the messages it held. A copy of a message that was only waiting
    # finds its job claimed or its ingest done, and does nothing.
    resend_waiting_after_s: int = Field(default=900, ge=3)
    # A new version whose samples would be in more segments of shards than this has them copied
    # into one shard instead (`core.sample_store.compact`).
    max_version_segments: int = Field(default=4096, ge=1)
    # How often beat looks for due re-audit schedules and webhook deliveries to retry.
    schedule_tick_s: int = 60
    # Webhooks may call loopback, private and link-local addresses (a receiver on this host or the
    # internal network). Off by default: an owner's webhook must not reach the service's network.
    webhook_allow_private_hosts: bool = False

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'lilaw.sqlite').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.sqlite').resolve()}"

    @property
    def resolved_heartbeat_interval_s(self) -> float:
        return self.heartbeat_interval_s or self.heartbeat_timeout_s / 6

    @property
    def resolved_reap_interval_s(self) -> float:
        return self.reap_interval_s or self.heartbeat_timeout_s / 3

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def sample_dir(self) -> Path:
        """Dataset versions' decoded samples, as .npy shards (`core.sample_store`)."""
        return self.data_dir / "samples"

    @property
    def backbone_dir(self) -> Path:
        """Embeddings mode's backbone weights, put there by the operator (`core.services.backbones`)."""
        return self.data_dir / "backbones"

    @property
    def job_dir(self) -> Path:
        """Per-job artifacts: checkpoints and the trained model."""
        return self.data_dir / "jobs"


@lru_cache
def get_settings() -> Settings:
    return Settings()
