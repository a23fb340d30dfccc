"""The audit queue: a job's Celery task sent by name, with the job id only, to the audit queue.

Send only after the job row is committed: the worker may pick the task up at once.
"""

from __future__ import annotations

from celery import Celery
from kombu.exceptions import OperationalError
from sqlalchemy.orm import Session

from core.services import BrokerUnavailableError, jobs
from core.store import AuditJob
from worker.celery_app import AUDIT_TASK


class AuditQueue:
    def __init__(self, celery: Celery, queue: str):
        self._celery = celery
        self._queue = queue

    def send(self, job_id: int) -> str:
        """Queue the job's audit task; returns the task id."""
        try:
            return self._celery.send_task(AUDIT_TASK, args=[job_id], queue=self._queue).id
        except OperationalError as error:
            # kombu's message names the broker's host and port: the error handler logs it as the
            # cause, the client does not see it.
            raise BrokerUnavailableError(f"job {job_id} could not be queued: the broker is unavailable") from error

    def submit(self, session: Session, job: AuditJob) -> None:
        """Commit the new job, then queue it. A job the broker refuses is stored as failed and
        `BrokerUnavailableError` raised."""
        session.commit()  # the worker must find the job row when its task arrives
        try:
            job.celery_task_id = self.send(job.id)
        except BrokerUnavailableError as error:
            jobs.mark_failed(job, error.message)
            session.commit()
            raise
