"""The Celery application: JSON only, late acks, one job at a time per worker process.

Embedded mode runs over kombu's SQLAlchemy transport on a SQLite file; production over Redis.
Audits go to their own queue (`audit`), consumed by GPU workers, one job per GPU.
"""

from __future__ import annotations

from celery import Celery

from core.settings import get_settings

AUDIT_TASK = "lilaw.audit"
REAP_TASK = "lilaw.reap_stuck_jobs"


def make_celery() -> Celery:
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    hard_limit = int(settings.job_soft_time_limit_s * 1.2)
    app = Celery("lilaw_audit", broker=settings.resolved_broker_url, include=["worker.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.job_soft_time_limit_s,
        task_time_limit=hard_limit,
        broker_transport_options={"visibility_timeout": hard_limit + 3600},
        broker_connection_retry_on_startup=True,
        task_routes={AUDIT_TASK: {"queue": settings.audit_queue}},
        beat_schedule={REAP_TASK: {"task": REAP_TASK, "schedule": 60.0}},
    )
    return app


app = make_celery()
