"""The statements behind two reads of a finished job, on SQLite and Postgres: a page of the review
queue reads the job's newest epoch once (its suspects, their weight histories and the progress
counts all use it), and one sample's history is one statement, with the rows the separate
lookups found before."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import joinedload

from core.dynamics import SPLIT_TRAIN
from core.services import NotFoundError, results
from core.services.artifacts import job_artifacts
from core.services.audit_runs import execute_job
from core.services.reviews import review_queue
from core.store import AuditJob, JobStatus, SampleScore, sample_dynamics, session_scope

NEWEST_EPOCH_READ = "max(sample_epochs.epoch)"


@contextmanager
def statements(sessions) -> Iterator[list[str]]:
    """The SQL statements run on the sessions' engine inside the block."""
    seen: list[str] = []
    engine = sessions.kw["bind"]

    def record(_connection, _cursor, statement, _parameters, _context, _many) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


@pytest.fixture
def finished_job(sessions, settings, make_job) -> int:
    job_id = make_job()
    assert execute_job(sessions, job_id, settings) is JobStatus.SUCCEEDED
    return job_id


def _job(session, job_id: int) -> AuditJob:
    return session.scalar(select(AuditJob).where(AuditJob.id == job_id).options(joinedload(AuditJob.dataset_version)))


def test_a_review_queue_page_reads_the_newest_epoch_once(sessions, settings, finished_job):
    with session_scope(sessions) as session:
        job = _job(session, finished_job)
        with statements(sessions) as first_page:
            queue = review_queue(session, job, settings, limit=5, split=SPLIT_TRAIN)
        with statements(sessions) as next_page:
            later = review_queue(session, job, settings, limit=5, split=SPLIT_TRAIN, cursor=queue.next_cursor)

    assert sum(NEWEST_EPOCH_READ in statement for statement in first_page) == 1
    assert sum(NEWEST_EPOCH_READ in statement for statement in next_page) == 1
    assert len(queue.items) == 5 and queue.progress is not None and queue.progress.total > 0
    for item in [*queue.items, *later.items]:
        assert item.weights["epoch"] == [1, 2, 3] and len(item.weights["w_alpha"]) == 3
        assert item.suspect.suspect.split == SPLIT_TRAIN


@pytest.mark.parametrize("knows_its_epochs", [True, False])
def test_one_samples_history_is_one_statement_with_the_rows_of_the_separate_lookups(
    sessions, settings, finished_job, knows_its_epochs
):
    with session_scope(sessions) as session:
        job = _job(session, finished_job)
        artifacts = job_artifacts(settings, job)
        session.expunge(job)
        if not knows_its_epochs:  # a job made without its epoch count reads the newest epoch first
            job.total_epochs = None
        for sample_index in (0, 17):
            with statements(sessions) as seen:
                history = results.sample_history(session, job, sample_index, artifacts)
            assert len(seen) == (1 if knows_its_epochs else 2)
            expected_epochs = sample_dynamics(session, job.id, sample_index)
            assert [row.epoch for row in history.epochs] == [1, 2, 3]
            assert history.epochs == expected_epochs
            assert history.score is session.get(SampleScore, (job.id, sample_index))
            assert (history.sample.sample_index, history.label) == (sample_index, history.sample.label)
        with pytest.raises(NotFoundError, match="has no sample 10000"):
            results.sample_history(session, job, 10_000, artifacts)
