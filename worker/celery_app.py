"""The Celery application: JSON only, late acks, one job at a time per worker process.

Embedded mode runs over kombu's SQLAlchemy transport on a SQLite file; production over Redis.
Audits go to their own queue (`audit`), consumed by GPU workers, one job per GPU. Beat's periodic
tasks (the reapers of stuck jobs and of lost ingests, due re-audit schedules, the blob sweep) go to
`audit.maintenance`, which every worker consumes too by default (`lilaw-audit worker`). Webhook
deliveries go to `audit.webhooks`, which only the webhook worker consumes
(`cli.stack.webhook_worker_arguments`; it takes the maintenance queue too): a slow receiver never
holds an audit worker's slot. Ingests of uploaded files (`core.services.ingest`) go to
`audit.ingest`, which the ingest worker consumes (`cli.stack.ingest_worker_arguments`): a large
upload never waits behind a long audit, nor holds an audit worker.

Building the app touches no file: the data dir, which holds the SQLite broker and beat's
schedule, is created when a worker or beat starts on `app`, or when `declare_queues` connects.
"""

from __future__ import annotations

from celery import Celery
from celery.signals import import_modules
from kombu import Exchange, Queue

from core.settings import Settings, get_settings

AUDIT_TASK = "lilaw.audit"
REAP_TASK = "lilaw.reap_stuck_jobs"
REAP_INGESTS_TASK = "lilaw.reap_lost_ingests"
SCHEDULES_TASK = "lilaw.run_due_schedules"
WEBHOOKS_TASK = "lilaw.deliver_webhooks"
SWEEP_BLOBS_TASK = "lilaw.sweep_orphan_blobs"
INGEST_TASK = "lilaw.ingest"
SWEEP_BLOBS_EVERY_S = 3600.0
MAINTENANCE_TASKS = (REAP_TASK, REAP_INGESTS_TASK, SCHEDULES_TASK, SWEEP_BLOBS_TASK)


def maintenance_queue(settings: Settings) -> str:
    """The reaper's queue, named after the audit queue: deployments sharing a broker stay apart."""
    return f"{settings.audit_queue}.maintenance"


def webhooks_queue(settings: Settings) -> str:
    """The webhook deliveries' queue, named after the audit queue."""
    return f"{settings.audit_queue}.webhooks"


def ingest_queue(settings: Settings) -> str:
    """The uploads' ingest queue, named after the audit queue."""
    return f"{settings.audit_queue}.ingest"


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    hard_limit = int(settings.job_soft_time_limit_s * 1.2)
    broker_url = settings.resolved_broker_url
    # kombu's SQLAlchemy transport hands its options to create_engine and never redelivers a
    # message by timeout; on Redis a running job's message must outlive the job.
    transport_options = {} if broker_url.startswith("sqla+") else {"visibility_timeout": hard_limit + 3600}
    # A reap message not consumed before the next one is sent is dropped.
    reap_every = settings.resolved_reap_interval_s
    reap_ingests_every = settings.ingest_stale_s / 3
    tick = float(settings.schedule_tick_s)
    app = Celery("lilaw_audit", broker=broker_url, include=["worker.tasks"])
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
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_routes={
            AUDIT_TASK: {"queue": settings.audit_queue},
            **{task: {"queue": maintenance_queue(settings)} for task in MAINTENANCE_TASKS},
            WEBHOOKS_TASK: {"queue": webhooks_queue(settings)},
            INGEST_TASK: {"queue": ingest_queue(settings)},
        },
        beat_schedule={
            REAP_TASK: {"task": REAP_TASK, "schedule": reap_every, "options": {"expires": reap_every}},
            REAP_INGESTS_TASK: {
                "task": REAP_INGESTS_TASK,
                "schedule": reap_ingests_every,
                "options": {"expires": reap_ingests_every},
            },
            SWEEP_BLOBS_TASK: {
                "task": SWEEP_BLOBS_TASK, "schedule": SWEEP_BLOBS_EVERY_S, "options": {"expires": SWEEP_BLOBS_EVERY_S}
            },
            **{
                task: {"task": task, "schedule": tick, "options": {"expires": tick}}
                for task in (SCHEDULES_TASK, WEBHOOKS_TASK)
            },
        },
        beat_schedule_filename=str(settings.data_dir / "celerybeat-schedule"),
    )
    return app


def declare_queues(settings: Settings) -> None:
    """Create the broker's queues before the processes start. kombu's SQLAlchemy transport creates
    a queue on first use and fails when two processes do so at once (a worker and beat starting
    together on a new broker file)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with make_celery(settings).connection_for_write() as connection:
        for name in (settings.audit_queue, maintenance_queue(settings), webhooks_queue(settings), ingest_queue(settings)):
            Queue(name, Exchange(name), routing_key=name)(connection.default_channel).declare()


app = make_celery()


@import_modules.connect(sender=app)
def create_data_dir(sender: Celery, **_: object) -> None:
    """A worker or beat starting on `app` imports its task modules first, before it connects to
    the broker or opens its schedule file."""
    get_settings().data_dir.mkdir(parents=True, exist_ok=True)
