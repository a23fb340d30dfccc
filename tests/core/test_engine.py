"""The training loop: dynamics capture, validation scoring, progress, checkpoints and resume."""

import numpy as np
import pytest
import torch

from core.dataset import AuditDataset
from core.dynamics import SPLIT_TRAIN, SPLIT_VAL
from core.engine import AuditCancelled, Trainer, TrainConfig
from core.splits import make_split
from core.errors import ConfigError
from core.lilaw import LilawConfig


def blobs(n=300, classes=3, features=10, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centers = rng.normal(scale=3, size=(classes, features))
    x = (centers[y] + rng.normal(size=(n, features))).astype(np.float32)
    return AuditDataset("blobs", "tabular", x, y, [f"c{c}" for c in range(classes)], [f"s{i}" for i in range(n)])


def test_every_sample_gets_exactly_one_row_per_epoch_with_consistent_fields():
    dataset = blobs()
    seen = []
    result = Trainer(dataset, TrainConfig(epochs=3, batch_size=32, val_fraction=0.2)).fit(on_epoch=seen.append)

    assert [d.epoch for d in seen] == [1, 2, 3]
    for dyn in seen:
        assert np.array_equal(np.sort(dyn.sample_index), np.arange(len(dataset)))
        assert np.allclose(dyn.w, dyn.w_alpha + dyn.w_beta + dyn.w_delta, atol=1e-6)
        assert ((dyn.p_label <= dyn.p_max + 1e-6) & (dyn.p_max <= 1 + 1e-6)).all()
        assert np.allclose(dyn.loss, -np.log(dyn.p_label), atol=1e-4)
        correct = dyn.predicted == dataset.y
        assert ((dyn.margin > 0) == correct).mean() > 0.99
    assert result.history.w_alpha.shape == (3, len(dataset))
    assert (result.split == SPLIT_VAL).sum() == 60
    assert np.array_equal(seen[0].split, result.split)
    # The model learns this easy problem, validation samples included (scored out of sample).
    val = result.split == SPLIT_VAL
    assert (result.history.predicted[-1][val] == dataset.y[val]).mean() > 0.9


def test_alpha_beta_delta_move_after_warm_up_only_and_trajectory_is_recorded():
    result = Trainer(blobs(), TrainConfig(epochs=3, batch_size=50, val_fraction=0.2)).fit()
    steps_per_epoch = 5  # 240 train samples / 50
    traj = result.trajectory
    epoch1 = traj[traj[:, 1] == 1]
    assert len(epoch1) == 1 and np.allclose(epoch1[0, 2:], [10, 2, 6])  # warm-up: no meta step
    later = traj[traj[:, 1] > 1]
    assert len(later) == 2 * (steps_per_epoch + 1)
    final_alpha, final_beta = traj[-1, 2], traj[-1, 3]
    assert final_alpha < 10 and final_beta > 2  # Appendix A.2: α only decreases, β only increases


def test_plain_weighting_leaves_lilaw_parameters_alone():
    result = Trainer(blobs(), TrainConfig(epochs=2, weighting="none")).fit()
    assert np.allclose(result.trajectory[:, 2:], [10, 2, 6])


def test_split_is_stratified_seeded_and_never_empties_a_class():
    labels = np.repeat([0, 1, 2], [50, 30, 2])
    split = make_split(labels, 0.2, seed=1)
    assert np.array_equal(split, make_split(labels, 0.2, seed=1))
    assert [(split[labels == c] == SPLIT_VAL).sum() for c in range(3)] == [10, 6, 0] or \
        [(split[labels == c] == SPLIT_VAL).sum() for c in range(3)] == [10, 6, 1]
    assert all((split[labels == c] == SPLIT_TRAIN).any() for c in range(3))


@pytest.mark.parametrize(
    "config",
    [TrainConfig(epochs=0), TrainConfig(batch_size=0), TrainConfig(weighting="magic"), TrainConfig(val_fraction=0),
     TrainConfig(val_fraction=1.0), TrainConfig(loss="hinge"), TrainConfig(lilaw=LilawConfig(meta_batch_size=0))],
)
def test_invalid_configs_are_refused_with_a_clear_error(config):
    with pytest.raises(ConfigError):
        Trainer(blobs(), config)


def test_progress_reports_steps_and_eta():
    events = []
    Trainer(blobs(), TrainConfig(epochs=2, batch_size=30, progress_every=2)).fit(on_progress=events.append)
    assert events[-1].epoch == 2 and events[-1].step == events[-1].steps_per_epoch == 9
    assert events[-1].eta_s == pytest.approx(0, abs=1e-6)
    assert all(e.eta_s is not None and e.eta_s >= 0 for e in events)


def test_resume_from_checkpoint_continues_where_it_stopped(tmp_path):
    dataset, config = blobs(), TrainConfig(epochs=3, batch_size=32, seed=7)
    checkpoint = tmp_path / "audit.ckpt"
    uninterrupted = Trainer(dataset, config).fit()

    def stop_after_epoch_2():
        return calls.append(1) or len(seen) >= 2

    calls, seen = [], []
    with pytest.raises(AuditCancelled):
        Trainer(dataset, config).fit(on_epoch=seen.append, checkpoint_path=checkpoint, should_stop=stop_after_epoch_2)
    assert checkpoint.is_file() and not checkpoint.with_suffix(".ckpt.tmp").exists()

    resumed_epochs = []
    resumed = Trainer(dataset, config).fit(on_epoch=resumed_epochs.append, checkpoint_path=checkpoint)
    assert [d.epoch for d in resumed_epochs] == [3]  # epochs 1-2 are not redone
    assert resumed.history.w_alpha.shape == (3, len(dataset))
    np.testing.assert_allclose(resumed.history.loss, uninterrupted.history.loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(resumed.trajectory, uninterrupted.trajectory, rtol=1e-5)


def test_predict_proba_on_new_inputs_matches_dataset_rows():
    dataset = blobs()
    trainer = Trainer(dataset, TrainConfig(epochs=1))
    trainer.fit()
    probs = trainer.predict_proba(dataset.x[:20])
    assert probs.shape == (20, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.allclose(probs, trainer.predict_proba(index=np.arange(20)), atol=1e-6)


def test_images_and_time_series_train_with_their_default_models():
    rng = np.random.default_rng(0)
    y = np.arange(64) % 2
    images = AuditDataset("img", "image", rng.integers(0, 255, (64, 1, 12, 12), dtype=np.uint8), y, ["a", "b"],
                          [str(i) for i in range(64)])
    series = AuditDataset("ts", "timeseries", rng.normal(size=(64, 1, 50)).astype(np.float32), y, ["a", "b"],
                          [str(i) for i in range(64)])
    for dataset, model in ((images, "small-cnn"), (series, "cnn1d"), (series, "lstm")):
        result = Trainer(dataset, TrainConfig(epochs=2, batch_size=16, model=None if model != "lstm" else model)).fit()
        assert result.model_name == model
        assert torch.isfinite(torch.from_numpy(result.history.loss)).all()
