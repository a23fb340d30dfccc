"""Warm start: a re-audit of a grown dataset begins from the previous run's model and α, β, δ."""

import numpy as np
import pytest

from core.audit import AuditConfig, run_audit
from core.dataset import AuditDataset
from core.checkpoints import WarmStart
from core.engine import AuditCancelled, Trainer, TrainConfig
from core.errors import ConfigError
from core.loaders import load_dataset

VALUES = (7.5, 3.0, 5.0)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def grown(digits):
    """The base dataset (the first 80% of digits) and the indices of the samples added since."""
    cut = int(0.8 * len(digits))
    return digits.subset(np.arange(cut)), np.arange(cut, len(digits))


@pytest.fixture(scope="module")
def previous(grown):
    """A previous run: 3 epochs on the base dataset, its weights and its final α, β, δ."""
    base, _ = grown
    result = Trainer(base, TrainConfig(epochs=3, batch_size=64)).fit()
    state = {name: tensor.detach().clone() for name, tensor in result.model.state_dict().items()}
    return WarmStart(model_state=state, lilaw_values=tuple(float(v) for v in result.trajectory[-1, 2:]))


def test_a_warm_start_is_far_more_accurate_after_one_epoch_than_a_cold_start(digits, grown, previous):
    _, new = grown
    config = TrainConfig(epochs=1, batch_size=256)  # 6 steps: a cold start has barely begun
    cold = Trainer(digits, config).fit()
    warm = Trainer(digits, config, warm_start=previous).fit()

    # Predictions of the first epoch, on the samples the previous run never saw.
    cold_accuracy = (cold.history.predicted[0][new] == digits.y[new]).mean()
    warm_accuracy = (warm.history.predicted[0][new] == digits.y[new]).mean()
    assert warm_accuracy > 0.85
    assert warm_accuracy > cold_accuracy + 0.2


def test_run_audit_starts_from_the_given_alpha_beta_delta_with_weighting_from_epoch_one(digits):
    start = Trainer(digits, TrainConfig(epochs=1, batch_size=64)).fit()
    state = {name: tensor.detach().clone() for name, tensor in start.model.state_dict().items()}
    result = run_audit(digits, AuditConfig(epochs=1, batch_size=64), warm_start=WarmStart(state, VALUES))

    traj = result.trajectory
    assert np.allclose(traj[0, 2:], VALUES)
    steps_per_epoch = -(-int((result.split == 0).sum()) // 64)
    # One row at the epoch's start, then one per meta step: weighting is active in epoch 1.
    assert (traj[:, 1] == 1).sum() == steps_per_epoch + 1
    assert not np.allclose(traj[-1, 2:], VALUES)
    assert result.history.w_alpha.shape == (1, len(digits))


def test_a_cold_start_still_warms_up_for_one_epoch(digits):
    traj = Trainer(digits, TrainConfig(epochs=1, batch_size=64)).fit().trajectory
    assert len(traj) == 1 and np.allclose(traj[0, 2:], [10, 2, 6])


def test_the_optimizer_starts_fresh(digits, previous):
    trainer = Trainer(digits, TrainConfig(epochs=1), warm_start=previous)
    assert trainer.optimizer.state_dict()["state"] == {}
    for name, tensor in trainer.model.state_dict().items():
        assert np.array_equal(tensor.cpu().numpy(), previous.model_state[name].cpu().numpy())


def test_weights_of_another_class_count_input_shape_or_model_are_refused(digits, previous):
    three_classes = digits.subset(np.flatnonzero(digits.y < 3))
    three_classes.class_names = ["0", "1", "2"]
    rgb = AuditDataset("rgb", "image", np.repeat(digits.x, 3, axis=1), digits.y, digits.class_names, digits.sample_ids)
    with pytest.raises(ConfigError, match=r"^cannot warm start: .*head\.weight has shape \(10, 128\), the model needs \(3, 128\)"):
        Trainer(three_classes, TrainConfig(epochs=1), warm_start=previous)
    with pytest.raises(ConfigError, match=r"^cannot warm start: .*features\.0\.0\.weight has shape"):
        Trainer(rgb, TrainConfig(epochs=1), warm_start=previous)

    flat = AuditDataset("flat", "tabular", digits.x.reshape(len(digits), -1).astype(np.float32), digits.y,
                        digits.class_names, digits.sample_ids)
    with pytest.raises(ConfigError, match=r"^cannot warm start: .*'mlp'.*missing net\.0\.bias, .* and 3 more; unexpected"):
        Trainer(flat, TrainConfig(epochs=1), warm_start=previous)
    with pytest.raises(ConfigError, match=r"^cannot warm start: LiLAW values"):
        Trainer(digits, TrainConfig(epochs=1), warm_start=WarmStart(previous.model_state, (1.0, float("nan"), 2.0)))


def test_resuming_a_warm_started_run_reproduces_the_uninterrupted_run(tmp_path, digits, previous):
    config = TrainConfig(epochs=2, batch_size=64, seed=7)
    checkpoint = tmp_path / "audit.ckpt"
    uninterrupted = Trainer(digits, config, warm_start=previous).fit()

    seen = []
    with pytest.raises(AuditCancelled):
        Trainer(digits, config, warm_start=previous).fit(
            on_epoch=seen.append, checkpoint_path=checkpoint, should_stop=lambda: len(seen) >= 1)

    resumed_epochs = []
    resumed = Trainer(digits, config, warm_start=previous).fit(on_epoch=resumed_epochs.append, checkpoint_path=checkpoint)
    assert [d.epoch for d in resumed_epochs] == [2]
    np.testing.assert_allclose(resumed.history.loss, uninterrupted.history.loss, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(resumed.trajectory, uninterrupted.trajectory, rtol=1e-5)
    assert (resumed.trajectory[:, 1] == 1).sum() > 1  # epoch 1 was weighted in the interrupted run too
