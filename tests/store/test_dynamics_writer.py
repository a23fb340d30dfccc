import numpy as np
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core.dynamics import FLOAT_FIELDS, OPTIONAL_FLOAT_FIELDS
from core.metrics import detection_report
from core.score_registry import SCORE_NAMES
from core.store import (
    JobMetric,
    LilawTrajectoryPoint,
    SampleEpoch,
    SampleScore,
    create_job_partition,
    delete_job,
    metric_rows,
    write_epoch,
    write_metrics,
    write_scores,
    write_trajectory,
)
from core.store.partitions import partition_name

N = 50


def count(session: Session, model, job_id: int) -> int:
    return session.scalar(select(func.count()).select_from(model).where(model.job_id == job_id))


def has_partition(session: Session, job_id: int) -> bool:
    return session.scalar(text("SELECT to_regclass(:name)"), {"name": partition_name(job_id)}) is not None


def stored_epoch(session: Session, job_id: int, epoch: int) -> list[SampleEpoch]:
    statement = (
        select(SampleEpoch)
        .where(SampleEpoch.job_id == job_id, SampleEpoch.epoch == epoch)
        .order_by(SampleEpoch.sample_index)
    )
    return list(session.scalars(statement))


def test_write_epoch_stores_every_value_exactly(session, make_job, make_epoch):
    job = make_job(N)
    dynamics = make_epoch(N, epoch=1)

    assert write_epoch(session, job.id, dynamics) == N

    rows = stored_epoch(session, job.id, 1)
    assert [row.sample_index for row in rows] == list(range(N))
    assert [row.split for row in rows] == dynamics.split.tolist()
    assert [row.predicted for row in rows] == dynamics.predicted.tolist()
    for name in (*FLOAT_FIELDS, *OPTIONAL_FLOAT_FIELDS):
        stored = np.array([getattr(row, name) for row in rows], dtype=np.float32)
        np.testing.assert_array_equal(stored, getattr(dynamics, name), err_msg=name)


def test_an_optional_field_the_run_did_not_record_is_null(session, make_job, make_epoch):
    job = make_job(N)
    dynamics = make_epoch(N, epoch=1)
    dynamics.fbr_agreement = None  # a run without FBR

    assert write_epoch(session, job.id, dynamics) == N

    assert {row.fbr_agreement for row in stored_epoch(session, job.id, 1)} == {None}


def test_write_epoch_twice_replaces_the_epoch(session, make_job, make_epoch):
    job = make_job(N)
    write_epoch(session, job.id, make_epoch(N, epoch=1, seed=1))
    redelivered = make_epoch(N, epoch=1, seed=2)

    write_epoch(session, job.id, redelivered)

    rows = stored_epoch(session, job.id, 1)
    assert len(rows) == N
    np.testing.assert_array_equal(np.array([row.w_alpha for row in rows], dtype=np.float32), redelivered.w_alpha)


def test_two_epochs_store_one_row_per_sample_per_epoch(session, make_job, make_epoch):
    job = make_job(N)
    for epoch in (1, 2, 2, 1):
        write_epoch(session, job.id, make_epoch(N, epoch=epoch))

    assert count(session, SampleEpoch, job.id) == 2 * N
    per_sample_epoch = session.execute(
        select(SampleEpoch.epoch, SampleEpoch.sample_index, func.count())
        .where(SampleEpoch.job_id == job.id)
        .group_by(SampleEpoch.epoch, SampleEpoch.sample_index)
    ).all()
    assert {(epoch, index) for epoch, index, _ in per_sample_epoch} == {(e, i) for e in (1, 2) for i in range(N)}
    assert {rows for _, _, rows in per_sample_epoch} == {1}


def test_write_epoch_leaves_other_jobs_alone(session, make_job, make_epoch):
    first, second = make_job(N), make_job(N)
    write_epoch(session, first.id, make_epoch(N, epoch=1))
    write_epoch(session, second.id, make_epoch(N, epoch=1))

    write_epoch(session, second.id, make_epoch(N, epoch=1, seed=5))

    assert count(session, SampleEpoch, first.id) == N
    assert count(session, SampleEpoch, second.id) == N


def test_write_epoch_stores_nan_as_null(session, make_job, make_epoch):
    job = make_job(N)
    dynamics = make_epoch(N, epoch=1)
    dynamics.w_alpha[[0, 7]] = np.nan
    dynamics.el2n[:] = np.nan

    write_epoch(session, job.id, dynamics)

    rows = stored_epoch(session, job.id, 1)
    assert [i for i, row in enumerate(rows) if row.w_alpha is None] == [0, 7]
    assert all(row.el2n is None for row in rows)
    assert rows[1].w_alpha == pytest.approx(float(dynamics.w_alpha[1]))
    assert [row.predicted for row in rows] == dynamics.predicted.tolist()


def test_write_epoch_refuses_an_unknown_job(session, make_epoch):
    with pytest.raises(LookupError, match="audit job 987654 does not exist"):
        write_epoch(session, 987654, make_epoch(N, epoch=1))


def test_write_epoch_refuses_arrays_of_different_lengths(session, make_job, make_epoch):
    job = make_job(N)
    dynamics = make_epoch(N, epoch=1)
    dynamics.loss = dynamics.loss[:-1]

    with pytest.raises(ValueError, match="loss"):
        write_epoch(session, job.id, dynamics)


def test_delete_job_drops_its_dynamics_and_results(session, make_job, make_epoch):
    job, other = make_job(N), make_job(N)
    for job_id in (job.id, other.id):
        write_epoch(session, job_id, make_epoch(N, epoch=1))
        write_scores(session, job_id, {"w_alpha": np.ones(N)}, np.ones(N), np.arange(1, N + 1))
    write_trajectory(session, job.id, [[0, 1, 10.0, 2.0, 6.0]])
    write_metrics(session, job.id, [{"score": "w_alpha", "auroc": 0.9}])
    postgres = session.bind.dialect.name == "postgresql"
    assert not postgres or has_partition(session, job.id)

    assert delete_job(session, job.id)

    for model in (SampleEpoch, SampleScore, LilawTrajectoryPoint, JobMetric):
        assert count(session, model, job.id) == 0, model.__tablename__
    assert not postgres or not has_partition(session, job.id)
    assert count(session, SampleEpoch, other.id) == N
    assert not delete_job(session, job.id)


def test_deleting_a_job_row_directly_still_drops_its_dynamics(session, make_job, make_epoch):
    job = make_job(N)
    write_epoch(session, job.id, make_epoch(N, epoch=1))

    session.delete(job)
    session.flush()

    assert count(session, SampleEpoch, job.id) == 0
    if session.bind.dialect.name == "postgresql":
        assert not has_partition(session, job.id)


def test_create_job_partition_is_idempotent(session, make_job, make_epoch):
    job = make_job(N)
    create_job_partition(session, job.id)
    write_epoch(session, job.id, make_epoch(N, epoch=1))

    create_job_partition(session, job.id)

    assert count(session, SampleEpoch, job.id) == N  # the partition is kept, not made anew
    if session.bind.dialect.name == "postgresql":
        assert has_partition(session, job.id)


def test_write_scores_replaces_the_jobs_scores(session, make_job):
    job = make_job(N)
    rng = np.random.default_rng(0)
    every_score = {name: rng.random(N) for name in SCORE_NAMES}
    write_scores(session, job.id, every_score, rng.random(N), rng.permutation(N) + 1)
    w_alpha, rank = rng.random(N).astype(np.float32), rng.permutation(N) + 1

    assert write_scores(session, job.id, {"w_alpha": w_alpha}, w_alpha, rank) == N

    statement = select(SampleScore).where(SampleScore.job_id == job.id).order_by(SampleScore.sample_index)
    rows = list(session.scalars(statement))
    assert len(rows) == N
    assert [row.rank for row in rows] == rank.tolist()
    np.testing.assert_array_equal(np.array([row.w_alpha for row in rows], dtype=np.float32), w_alpha)
    assert all(row.aum is None and row.cl_self_confidence is None for row in rows)


def test_write_scores_refuses_unknown_names_and_wrong_lengths(session, make_job):
    job = make_job(N)
    with pytest.raises(ValueError, match="unknown score names \\['grand'\\]"):
        write_scores(session, job.id, {"grand": np.ones(N)}, np.ones(N), np.arange(1, N + 1))
    with pytest.raises(ValueError, match="aum"):
        write_scores(session, job.id, {"aum": np.ones(N - 1)}, np.ones(N), np.arange(1, N + 1))


def test_write_trajectory_replaces_the_epochs_it_contains(session, make_job):
    job = make_job(N)
    epoch_1 = [[0, 1, 10.0, 2.0, 6.0], [1, 1, 9.9, 2.1, 6.0]]
    write_trajectory(session, job.id, np.array(epoch_1 + [[0, 2, 9.8, 2.2, 6.1]]))

    write_trajectory(session, job.id, np.array([[0, 2, 9.7, 2.3, 6.2], [1, 2, 9.6, 2.4, 6.3]]))

    points = session.execute(
        select(LilawTrajectoryPoint.step, LilawTrajectoryPoint.epoch, LilawTrajectoryPoint.alpha)
        .where(LilawTrajectoryPoint.job_id == job.id)
        .order_by(LilawTrajectoryPoint.epoch, LilawTrajectoryPoint.step)
    ).all()
    assert [tuple(point) for point in points] == [(0, 1, 10.0), (1, 1, 9.9), (0, 2, 9.7), (1, 2, 9.6)]


def test_write_metrics_replaces_the_jobs_metrics(session, make_job):
    job = make_job(N)
    rng = np.random.default_rng(0)
    flags = rng.random(N) < 0.3
    scores = {"w_alpha": rng.random(N) + flags, "loss": rng.random(N)}
    split = np.arange(N) % 5 == 0
    detection = {
        "aggregate": detection_report(scores, flags),
        "aggregate_train_only": detection_report(scores, flags, mask=~split),
        "per_epoch": {1: detection_report(scores, flags), 2: detection_report(scores, flags)},
    }
    write_metrics(session, job.id, [{"score": "w_alpha", "auroc": 0.1}])

    assert write_metrics(session, job.id, metric_rows(detection)) == 8

    session.expire_all()
    metrics = list(session.scalars(select(JobMetric).where(JobMetric.job_id == job.id)))
    assert {(m.score, m.epoch, m.split) for m in metrics} == {
        (score, epoch, split)
        for score in scores
        for epoch, split in ((None, "all"), (None, "train"), (1, "all"), (2, "all"))
    }
    aggregate = next(m for m in metrics if (m.score, m.epoch, m.split) == ("w_alpha", None, "all"))
    expected = detection["aggregate"]["w_alpha"]
    assert aggregate.auroc == pytest.approx(expected["auroc"])
    assert aggregate.num_mislabeled == int(flags.sum())
    assert aggregate.precision_at_k == {str(k): pytest.approx(v) for k, v in expected["precision_at_k"].items()}


def test_write_metrics_stores_nan_as_null_and_refuses_unknown_fields(session, make_job):
    job = make_job(N)
    write_metrics(session, job.id, [{"score": "aum", "auroc": np.nan, "precision_at_k": {10: np.float64("nan")}}])

    metric = session.scalars(select(JobMetric).where(JobMetric.job_id == job.id)).one()
    assert (metric.auroc, metric.precision_at_k, metric.split) == (None, {"10": None}, "all")
    with pytest.raises(ValueError, match="unknown metric fields \\['gini'\\]"):
        write_metrics(session, job.id, [{"score": "aum", "gini": 0.5}])
