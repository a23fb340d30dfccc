import numpy as np
import pytest
from sqlalchemy import select

from core.dynamics import SPLIT_TRAIN, SPLIT_VAL, DynamicsHistory
from core.score_registry import EPOCH_SCORE_NAMES
from core.scores import epoch_scores, rank_scores
from core.store import SampleEpoch, sample_dynamics, top_suspects, write_epoch, write_scores
from core.store.queries import epoch_score

N = 40


@pytest.fixture
def audited_job(session, make_job, make_epoch):
    """A job of N samples (label i % 3, every 5th in the validation split) with two epochs of
    dynamics (epoch 2 predicts (i + 2) % 3) and scores whose rank order is a seeded permutation."""
    flags = np.arange(N) % 4 == 0
    job = make_job(N, is_mislabeled=flags)
    for epoch in (1, 2):
        write_epoch(session, job.id, make_epoch(N, epoch=epoch))
    default_score = np.random.default_rng(3).random(N).astype(np.float32)
    rank = np.empty(N, dtype=np.int64)
    rank[np.argsort(-default_score)] = np.arange(1, N + 1)
    write_scores(session, job.id, {"w_alpha": default_score, "aum": -default_score}, default_score, rank)
    return job, np.argsort(rank), flags


def test_top_suspects_come_in_rank_order_with_sample_and_last_epoch(session, audited_job):
    job, by_rank, flags = audited_job

    suspects = top_suspects(session, job.id, limit=10)

    assert [s.rank for s in suspects] == list(range(1, 11))
    assert [s.sample_index for s in suspects] == by_rank[:10].tolist()
    first = suspects[0]
    i = first.sample_index
    assert (first.sample_id, first.label, first.is_mislabeled) == (f"s{i:05d}", i % 3, bool(flags[i]))
    assert (first.predicted, first.split) == ((i + 2) % 3, SPLIT_VAL if i % 5 == 0 else SPLIT_TRAIN)
    assert first.scores["w_alpha"] == pytest.approx(first.default_score)
    assert first.scores["aum"] == pytest.approx(-first.default_score)
    assert first.scores["forgetting"] is None
    assert [s.default_score for s in suspects] == sorted((s.default_score for s in suspects), reverse=True)


def test_pages_after_rank_cover_every_sample_once(session, audited_job):
    job, by_rank, _ = audited_job
    pages, after = [], None
    while page := top_suspects(session, job.id, limit=7, after_rank=after):
        pages.append(page)
        after = page[-1].rank

    assert [len(page) for page in pages] == [7, 7, 7, 7, 7, 5]
    assert [s.sample_index for page in pages for s in page] == by_rank.tolist()


@pytest.mark.parametrize(
    ("filters", "keep"),
    [
        ({"label": 1}, lambda i: i % 3 == 1),
        ({"predicted": 0}, lambda i: (i + 2) % 3 == 0),
        ({"split": SPLIT_VAL}, lambda i: i % 5 == 0),
        ({"split": SPLIT_TRAIN, "label": 2}, lambda i: i % 5 != 0 and i % 3 == 2),
    ],
)
def test_filters_keep_rank_order_and_pages(session, audited_job, filters, keep):
    job, by_rank, _ = audited_job
    expected = [i for i in by_rank.tolist() if keep(i)]

    first = top_suspects(session, job.id, limit=3, **filters)
    rest = top_suspects(session, job.id, limit=N, after_rank=first[-1].rank, **filters)

    assert [s.sample_index for s in first + rest] == expected


def test_suspects_before_any_dynamics_have_no_prediction(session, make_job):
    job = make_job(5)
    write_scores(session, job.id, {}, np.zeros(5), np.arange(1, 6))

    suspects = top_suspects(session, job.id, limit=10)

    assert [(s.sample_index, s.predicted, s.split) for s in suspects] == [(i, None, None) for i in range(5)]
    assert top_suspects(session, job.id, limit=10, predicted=0) == []


def test_top_suspects_of_an_unknown_job_is_empty(session):
    assert top_suspects(session, 987654, limit=10) == []


def test_top_suspects_needs_a_positive_limit(session, audited_job):
    with pytest.raises(ValueError, match="limit"):
        top_suspects(session, audited_job[0].id, limit=0)


def test_sample_dynamics_lists_every_epoch_of_one_sample(session, audited_job, make_epoch):
    job, _, _ = audited_job

    rows = sample_dynamics(session, job.id, 7)

    assert [(row.epoch, row.sample_index, row.predicted) for row in rows] == [(1, 7, 2), (2, 7, 0)]
    assert rows[1].w_alpha == pytest.approx(float(make_epoch(N, epoch=2).w_alpha[7]))
    assert sample_dynamics(session, 987654, 7) == []


@pytest.mark.parametrize("name", EPOCH_SCORE_NAMES)
def test_each_per_epoch_score_ranks_in_sql_as_in_numpy(session, make_job, make_epoch, name):
    """The SQL form a page is ordered by and `core.scores.epoch_scores` agree on the stored
    dynamics: same orientation, same column."""
    job = make_job(N)
    recorded = [make_epoch(N, epoch=epoch, seed=11) for epoch in (1, 2, 3)]
    for dynamics in recorded:
        dynamics.margin = dynamics.margin * 8 - 4  # a margin takes either sign
        write_epoch(session, job.id, dynamics)
    expected = np.argsort(rank_scores(epoch_scores(DynamicsHistory.stack(recorded), 2)[name]))

    ordered = session.scalars(
        select(SampleEpoch.sample_index)
        .where(SampleEpoch.job_id == job.id, SampleEpoch.epoch == 2)
        .order_by(epoch_score(name).desc(), SampleEpoch.sample_index)
    ).all()

    assert ordered == expected.tolist()


def test_an_aggregate_only_score_has_no_per_epoch_form():
    with pytest.raises(ValueError, match="forgetting"):
        epoch_score("forgetting")
