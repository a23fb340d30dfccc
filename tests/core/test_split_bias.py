"""No split bias: the validation split's samples, scored out of sample, must not crowd the top of
the ranking. Per-split calibration of the scores (the default), the rotating validation split
(an option) and what both keep: within-split order, Algorithm 1's meta steps, resumable runs."""

from dataclasses import replace

import numpy as np
import pytest

from core.audit import run_audit
from core.audit_config import AuditConfig, TrainConfig
from core.dynamics import SPLIT_TRAIN, SPLIT_VAL
from core.engine import AuditCancelled, Trainer
from core.splits import make_folds
from core.errors import ConfigError
from core.loaders import load_dataset
from core.scores import calibrate_within_groups, rank_scores
from tests.core.test_engine import blobs


def _val_share_in_top(result, k: int) -> float:
    top = np.argsort(result.rank, kind="stable")[:k]
    return float((result.split[top] == SPLIT_VAL).mean())


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_default_ranking_holds_as_many_val_samples_as_the_split_does(digits):
    # 3% uniform noise on digits (54 flips): the top 100 holds every flip and the clean samples
    # just below them, where the out-of-sample validation samples' lower margins decided today
    # (fixed split, raw aum: 15% val in the top 100 against 10% overall).
    config = AuditConfig(epochs=5, inject_noise="uniform:0.03")
    result = run_audit(digits, config)
    overall = float((result.split == SPLIT_VAL).mean())
    assert abs(_val_share_in_top(result, 100) - overall) <= 0.02
    # The ranking is still a mislabel ranking: the flips come first.
    assert result.detection["aggregate"][config.default_score]["auroc"] > 0.95


def test_calibration_keeps_every_within_split_order_and_maps_val_onto_the_trained_values():
    rng = np.random.default_rng(0)
    groups = (rng.random(500) < 0.1).astype(np.int64)
    # held-out samples (group 1) score 2 higher: they would crowd the top uncalibrated
    raw = np.where(groups == 1, rng.normal(2, 1, 500), rng.normal(0, 1, 500))
    groups[:6] = 0
    raw[:5] = raw[5]  # ties
    raw[7] = np.nan
    calibrated = calibrate_within_groups({"aum": raw}, groups)["aum"]
    assert np.isnan(calibrated[7]) and np.isfinite(np.delete(calibrated, 7)).all()
    trained = np.flatnonzero((groups == 0) & np.isfinite(raw))
    held_out = np.flatnonzero(groups == 1)
    np.testing.assert_array_equal(calibrated[trained], raw[trained])  # the trained keep their values
    # the held-out keep their order among themselves, now on the trained samples' scale ...
    assert (np.diff(calibrated[held_out][np.argsort(raw[held_out])]) > 0).all()
    assert raw[trained].min() <= calibrated[held_out].min() and calibrated[held_out].max() <= raw[trained].max()
    # ... so the top 10% holds about as many of them as all samples do
    top = np.argsort(-np.nan_to_num(calibrated, nan=-np.inf))[:50]
    assert abs(np.isin(top, held_out).mean() - len(held_out) / 500) < 0.06
    assert np.isin(np.argsort(-np.nan_to_num(raw, nan=-np.inf))[:50], held_out).mean() > 0.5
    np.testing.assert_array_equal(calibrated[:6], calibrated[5])


def test_calibrated_and_raw_rankings_agree_within_a_split(digits):
    config = AuditConfig(epochs=2, inject_noise="uniform:0.1", split_calibration=False)
    raw = run_audit(digits, config)
    calibrated = run_audit(digits, replace(config, split_calibration=True))
    np.testing.assert_allclose(raw.history.loss, calibrated.history.loss, rtol=1e-5)  # the same training
    for split in (SPLIT_TRAIN, SPLIT_VAL):
        members = np.flatnonzero(raw.split == split)
        np.testing.assert_array_equal(rank_scores(raw.default_scores[members]),
                                      rank_scores(calibrated.default_scores[members]))


def test_rotating_split_holds_out_every_sample_once_in_k_epochs_and_still_meta_learns():
    dataset = blobs(n=300)
    config = TrainConfig(epochs=4, batch_size=32, val_fraction=0.25, val_split="rotate", seed=3)
    result = Trainer(dataset, config).fit()
    held_out = result.history.epoch_split == SPLIT_VAL  # [E, N]
    np.testing.assert_array_equal(held_out.sum(0), 1)  # K = 4 folds over 4 epochs: each sample once
    for epoch_held_out in held_out:
        assert 70 <= epoch_held_out.sum() <= 80  # a quarter, stratified
        for cls in range(3):
            assert epoch_held_out[dataset.y == cls].mean() == pytest.approx(0.25, abs=0.02)
    np.testing.assert_array_equal(result.split, result.history.epoch_split[-1])
    # Algorithm 1 still trains: W_α, W_β, W_δ every epoch, meta steps moving α, β, δ after warm-up.
    assert result.history.w_alpha.shape == result.history.w_delta.shape == (4, 300)
    assert (result.trajectory[:, 1] > 1).sum() > 4
    assert not np.allclose(result.trajectory[-1, 2:], result.trajectory[0, 2:])


def test_rotating_split_resumes_from_a_checkpoint_as_the_uninterrupted_run(tmp_path):
    dataset = blobs()
    config = TrainConfig(epochs=3, batch_size=32, seed=7, val_fraction=0.34, val_split="rotate")
    uninterrupted = Trainer(dataset, config).fit()
    checkpoint, seen = tmp_path / "audit.ckpt", []
    with pytest.raises(AuditCancelled):
        Trainer(dataset, config).fit(on_epoch=seen.append, checkpoint_path=checkpoint, should_stop=lambda: len(seen) >= 2)
    resumed_epochs = []
    resumed = Trainer(dataset, config).fit(on_epoch=resumed_epochs.append, checkpoint_path=checkpoint)
    assert [d.epoch for d in resumed_epochs] == [3]
    np.testing.assert_array_equal(resumed.history.epoch_split, uninterrupted.history.epoch_split)
    np.testing.assert_array_equal(resumed_epochs[0].split, uninterrupted.history.epoch_split[2])
    np.testing.assert_allclose(resumed.history.loss, uninterrupted.history.loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(resumed.trajectory, uninterrupted.trajectory, rtol=1e-5)


def test_a_checkpoint_of_a_fixed_split_does_not_resume_a_rotating_run(tmp_path):
    dataset, checkpoint = blobs(), tmp_path / "audit.ckpt"
    fixed = TrainConfig(epochs=2, batch_size=32, seed=7, val_fraction=0.34)
    seen = []
    with pytest.raises(AuditCancelled):
        Trainer(dataset, fixed).fit(on_epoch=seen.append, checkpoint_path=checkpoint, should_stop=lambda: len(seen) >= 1)
    with pytest.raises(ConfigError, match="different train/validation split"):
        Trainer(dataset, replace(fixed, val_split="rotate")).fit(checkpoint_path=checkpoint)


def test_a_trusted_set_is_a_fixed_split_even_when_rotation_is_asked_for():
    dataset = blobs()
    trusted = {i: int(dataset.y[i]) for i in range(0, 300, 10)}
    config = TrainConfig(epochs=2, batch_size=32, val_split="rotate")
    result = Trainer(dataset, config, trusted=trusted).fit()
    assert (result.history.epoch_split == result.history.epoch_split[0]).all()
    np.testing.assert_array_equal(np.flatnonzero(result.split == SPLIT_VAL), sorted(trusted))


def test_folds_are_stratified_seeded_and_cover_every_sample():
    labels = np.repeat(np.arange(4), [50, 30, 3, 1])
    folds = make_folds(labels, 0.2, seed=1)
    np.testing.assert_array_equal(folds, make_folds(labels, 0.2, seed=1))
    assert not np.array_equal(folds, make_folds(labels, 0.2, seed=2))
    assert set(folds.tolist()) == set(range(5))
    assert np.bincount(folds[labels == 0]).tolist() == [10] * 5


@pytest.mark.parametrize("changes", [{"val_split": "sometimes"}, {"val_split": "rotate", "val_fraction": 0.9},
                                     {"split_calibration": "yes"}])
def test_split_options_are_validated(changes):
    with pytest.raises(ConfigError):
        AuditConfig(**changes).validate()


def test_split_options_survive_a_stored_config():
    config = AuditConfig(val_split="rotate", split_calibration=False)
    again = AuditConfig.from_dict(config.to_dict())
    assert (again.val_split, again.split_calibration) == ("rotate", False)
