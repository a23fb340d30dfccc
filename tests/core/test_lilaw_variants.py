"""The item-3 options of issue 10: LiLAW weights detached from the graph, training augmentation."""

import copy

import numpy as np
import pytest
import torch

from core.audit_config import AuditConfig, LilawConfig
from core.augment import augment_images
from core.dataset import AuditDataset
from core.engine import Trainer, TrainConfig
from core.errors import ConfigError
from core.lilaw import label_and_max_probability, per_sample_loss


def _tabular(n=96, classes=3):
    rng = np.random.default_rng(0)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, 6)).astype(np.float32) + y[:, None]
    return AuditDataset("toy", "tabular", x, y, [str(c) for c in range(classes)], [str(i) for i in range(n)])


def _gradients_of_one_weighted_step(detach: bool) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """The network's gradient in one LiLAW training step, and the two hand-computed candidates:
    ∂(W·ℓ)/∂θ with W a function of s (Algorithm 1) and W·∂ℓ/∂θ with W a constant."""
    config = TrainConfig(epochs=1, batch_size=32, model="linear", lilaw=LilawConfig(detach_weights=detach))
    trainer = Trainer(_tabular(), config)
    before = copy.deepcopy(trainer.model)
    index = trainer.train_index[:32]
    trainer.train_step(index, weighted=True)
    taken = [p.grad.clone() for p in trainer.model.parameters()]

    def reference(detached: bool) -> list[torch.Tensor]:
        model = copy.deepcopy(before)
        labels = trainer.labels[index]
        logits = model(trainer.inputs.batch(index))
        _, p_label, p_max = label_and_max_probability(logits, labels)
        w_alpha, w_beta, w_delta = trainer.params.weights(p_label, p_max)
        weight = w_alpha + w_beta + w_delta
        weight = weight.detach() if detached else weight
        (weight * per_sample_loss(logits, labels)).mean().backward()
        return [p.grad for p in model.parameters()]

    return taken, reference(False), reference(True)


def _close(a, b):
    return all(torch.allclose(x, y, atol=1e-6) for x, y in zip(a, b))


def test_by_default_the_weights_gradient_reaches_the_network_as_in_algorithm_1():
    taken, through_w, detached = _gradients_of_one_weighted_step(detach=False)
    assert not _close(through_w, detached)  # the two readings differ on this batch
    assert _close(taken, through_w)


def test_detached_weights_carry_no_gradient_into_the_network():
    taken, through_w, detached = _gradients_of_one_weighted_step(detach=True)
    assert _close(taken, detached) and not _close(taken, through_w)


def test_detached_weights_leave_the_meta_step_and_the_recorded_weights_as_they_are():
    runs = {}
    for detach in (False, True):
        trainer = Trainer(_tabular(), TrainConfig(epochs=2, batch_size=32, model="linear",
                                                  lilaw=LilawConfig(detach_weights=detach, lr=0.5)))
        result = trainer.fit()
        runs[detach] = result
        # W_α, W_β, W_δ recorded every epoch, and (α, β, δ) meta-learned in the weighted epoch
        assert result.history.w_alpha.shape == (2, 96) and np.isfinite(result.history.w_delta).all()
        assert not np.allclose(result.trajectory[-1, 2:], [10.0, 2.0, 6.0])
    # identical epoch 1 (warm-up, plain loss); the networks part in the weighted epoch
    assert np.array_equal(runs[False].history.margin[0], runs[True].history.margin[0])
    assert not np.array_equal(runs[False].history.margin[1], runs[True].history.margin[1])


def test_options_reject_non_booleans():
    with pytest.raises(ConfigError):
        AuditConfig(lilaw=LilawConfig(detach_weights="yes")).validate()
    with pytest.raises(ConfigError):
        AuditConfig(augment=1).validate()
    assert AuditConfig.from_dict(AuditConfig(augment=True, lilaw=LilawConfig(detach_weights=True)).to_dict()) == \
        AuditConfig(augment=True, lilaw=LilawConfig(detach_weights=True))


def test_augmented_views_are_crops_and_flips_of_the_image_reproducible_from_the_seed():
    images = torch.randn(16, 1, 12, 12)
    views = augment_images(images, torch.Generator().manual_seed(3))
    assert views.shape == images.shape
    assert torch.equal(views, augment_images(images, torch.Generator().manual_seed(3)))
    # with the padding's border excluded, each view's centre is a shifted, maybe mirrored, crop
    for image, view in zip(images, views):
        centre = view[0, 4:8, 4:8]
        candidates = [img[0, r:r + 4, c:c + 4] for img in (image, image.flip(-1))
                      for r in range(9) for c in range(9)]
        assert any(torch.equal(centre, candidate) for candidate in candidates)


def _images(n=40):
    rng = np.random.default_rng(1)
    y = np.arange(n) % 2
    x = rng.integers(0, 255, size=(n, 1, 8, 8), dtype=np.uint8)
    return AuditDataset("img", "image", x, y, ["a", "b"], [str(i) for i in range(n)])


def test_augment_changes_the_training_views_of_an_image_run_and_nothing_elsewhere():
    plain = Trainer(_images(), TrainConfig(epochs=1, batch_size=8, model="small-cnn")).fit()
    augmented = Trainer(_images(), TrainConfig(epochs=1, batch_size=8, model="small-cnn", augment=True)).fit()
    train = plain.split == 0
    assert not np.allclose(plain.history.margin[0, train], augmented.history.margin[0, train])
    # a non-image dataset ignores it: the same run bit for bit
    base = Trainer(_tabular(), TrainConfig(epochs=1, batch_size=32, model="linear")).fit()
    ignored = Trainer(_tabular(), TrainConfig(epochs=1, batch_size=32, model="linear", augment=True)).fit()
    assert np.array_equal(base.history.margin, ignored.history.margin)
