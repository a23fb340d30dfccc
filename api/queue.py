"""The audit queue: a job's Celery task sent by name, with the job id only, to the audit queue.

Send only after the job row is committed: the worker may pick the task up at once.
"""

from __future__ import annotations

from celery import Celery
from kombu.exceptions import OperationalError

from core.services import BrokerUnavailableError
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
            raise BrokerUnavailableError(
                f"job {job_id} could not be queued: the broker is unavailable ({error})"
            ) from error
