"""FBR's agreement d_i as a dynamics field, recorded every epoch like W_α, and the `fbr_agreement`
score made of it: present for FBR runs only, low agreement ranked as suspect. Tiny digits runs."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from core.audit import AuditConfig, run_audit
from core.dynamics import SPLIT_TRAIN
from core.engine import AuditCancelled, Trainer
from core.loaders import load_dataset
from core.metrics import detection_report
from core.report import write_report

N = 240


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=N)


def _trusted(dataset, per_class=4):
    return {int(i): int(dataset.y[i]) for c in range(dataset.num_classes)
            for i in np.flatnonzero(dataset.y == c)[:per_class]}


@pytest.fixture(scope="module")
def fbr_run(digits):
    epochs = []
    config = AuditConfig(epochs=3, batch_size=64, weighting="fbr", inject_noise="uniform:0.3")
    result = run_audit(digits, config, trusted=_trusted(digits), on_epoch=epochs.append)
    return result, epochs


def test_every_epoch_handed_out_carries_the_agreement_of_every_sample(fbr_run):
    result, epochs = fbr_run
    assert [e.epoch for e in epochs] == [1, 2, 3]
    for row, dynamics in enumerate(epochs):
        assert dynamics.fbr_agreement.shape == (N,) and np.isfinite(dynamics.fbr_agreement).all()
        np.testing.assert_array_equal(dynamics.fbr_agreement, result.fbr["fbr_agreement"][row])
    np.testing.assert_array_equal(result.history.fbr_agreement, result.fbr["fbr_agreement"])


def test_the_fbr_agreement_score_is_the_negated_mean_agreement_and_ranks_flips_first(fbr_run):
    result, _ = fbr_run
    score = result.scores["fbr_agreement"]
    train = result.split == SPLIT_TRAIN  # trained samples keep their values under split calibration
    np.testing.assert_allclose(score[train], -result.history.fbr_agreement[:, train].astype(np.float64).mean(0))
    flags = result.dataset.is_mislabeled
    assert detection_report({"fbr_agreement": score}, flags)["fbr_agreement"]["auroc"] > 0.6
    # ...and it has per-epoch metrics, as every per-epoch score has.
    assert all("fbr_agreement" in result.detection["per_epoch"][epoch] for epoch in (1, 2, 3))


def test_a_run_without_fbr_has_neither_the_field_nor_the_score(digits):
    epochs = []
    result = run_audit(digits, AuditConfig(epochs=2, batch_size=64, inject_noise="uniform:0.3"), on_epoch=epochs.append)
    assert all(e.fbr_agreement is None for e in epochs) and result.history.fbr_agreement is None
    assert "fbr_agreement" not in result.scores
    assert "fbr_agreement" not in result.detection["per_epoch"][1]


def test_the_report_has_one_fbr_agreement_column(fbr_run, tmp_path):
    result, _ = fbr_run
    paths = write_report(result, tmp_path)
    with open(paths["scores"]) as f:
        header = next(csv.reader(f))
    assert header.count("fbr_agreement") == 1


def test_a_resumed_fbr_run_keeps_every_epochs_agreement_in_its_history(digits, tmp_path):
    trusted, config = _trusted(digits), AuditConfig(epochs=3, batch_size=64, weighting="fbr", seed=3)
    uninterrupted = Trainer(digits, config, trusted=trusted).fit()
    checkpoint, seen = tmp_path / "fbr.ckpt", []
    with pytest.raises(AuditCancelled):
        Trainer(digits, config, trusted=trusted).fit(
            on_epoch=seen.append, checkpoint_path=checkpoint, should_stop=lambda: len(seen) >= 2)
    resumed = Trainer(digits, config, trusted=trusted).fit(checkpoint_path=checkpoint)
    assert resumed.history.fbr_agreement.shape == (3, N)
    np.testing.assert_allclose(resumed.history.fbr_agreement, uninterrupted.history.fbr_agreement,
                               rtol=1e-4, atol=1e-5)
