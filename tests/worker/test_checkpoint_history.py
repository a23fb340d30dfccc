"""A job's per-epoch checkpoint: each epoch's dynamics written once, not the whole history again,
and a run resumed from it scores every epoch as the uninterrupted run does."""

import numpy as np
import torch

from core.checkpoints import history_dir, remove_checkpoint
from core.dataset import AuditDataset
from core.engine import AuditCancelled, Trainer, TrainConfig
from core.services.artifacts import LocalJobArtifacts
from core.store import AuditJob


def blobs(n=400, classes=3, features=8, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = (rng.normal(scale=3, size=(classes, features))[y] + rng.normal(size=(n, features))).astype(np.float32)
    return AuditDataset("blobs", "tabular", x, y, [f"c{c}" for c in range(classes)], [f"s{i}" for i in range(n)])


CONFIG = TrainConfig(epochs=4, batch_size=50, val_fraction=0.2)


def stop_after(epochs: int, seen: list):
    return lambda: len(seen) >= epochs


def test_each_epoch_is_written_once_and_the_checkpoint_does_not_grow(tmp_path):
    checkpoint, seen, sizes, first_epoch_file = tmp_path / "checkpoint.pt", [], [], []

    def on_epoch(dynamics):
        seen.append(dynamics)
        if checkpoint.exists():
            sizes.append(checkpoint.stat().st_size)
            files = sorted(history_dir(checkpoint).iterdir())
            first_epoch_file.append(files[0].stat().st_mtime_ns)

    Trainer(blobs(), CONFIG).fit(on_epoch=on_epoch, checkpoint_path=checkpoint)

    # Epochs 1-3 were checkpointed before epochs 2-4 ended: the file grows by the α/β/δ steps
    # only, far less than one epoch's per-sample arrays.
    one_epoch = (history_dir(checkpoint) / "epoch-00001.npz").stat().st_size
    assert len(sizes) == 3 and max(sizes) - min(sizes) < one_epoch / 8
    assert len(set(first_epoch_file)) == 1  # epoch 1's arrays were never rewritten
    assert len(list(history_dir(checkpoint).glob("*.npz"))) == 4


def test_a_resumed_run_ends_as_the_uninterrupted_one(tmp_path):
    dataset, checkpoint, seen = blobs(), tmp_path / "checkpoint.pt", []
    whole = Trainer(dataset, CONFIG).fit()
    try:
        Trainer(dataset, CONFIG).fit(on_epoch=seen.append, checkpoint_path=checkpoint, should_stop=stop_after(2, seen))
    except AuditCancelled:
        pass
    assert torch.load(checkpoint, weights_only=True)["epoch"] == 2

    resumed_epochs = []
    resumed = Trainer(dataset, CONFIG).fit(on_epoch=resumed_epochs.append, checkpoint_path=checkpoint)

    assert [d.epoch for d in resumed_epochs] == [3, 4]
    assert np.array_equal(resumed.history.epochs, whole.history.epochs)
    for name in ("w_alpha", "loss", "margin", "predicted"):
        assert np.allclose(getattr(resumed.history, name), getattr(whole.history, name), atol=1e-5), name


def test_an_epoch_file_left_by_a_crash_after_the_checkpoint_is_not_read(tmp_path):
    dataset, checkpoint, seen = blobs(), tmp_path / "checkpoint.pt", []
    try:
        Trainer(dataset, CONFIG).fit(on_epoch=seen.append, checkpoint_path=checkpoint, should_stop=stop_after(2, seen))
    except AuditCancelled:
        pass
    # A worker killed between writing epoch 3's arrays and the checkpoint that counts them.
    stray = history_dir(checkpoint) / "epoch-00003.npz"
    np.savez(stray, garbage=np.zeros(3))

    resumed = Trainer(dataset, CONFIG).fit(checkpoint_path=checkpoint)

    assert list(resumed.history.epochs) == [1, 2, 3, 4]
    with np.load(stray) as rewritten:
        assert "w_alpha" in rewritten.files


def test_removing_a_jobs_checkpoint_removes_its_history(tmp_path):
    artifacts = LocalJobArtifacts(tmp_path, AuditJob(id=3))
    checkpoint = artifacts.checkpoint_path()
    Trainer(blobs(), TrainConfig(epochs=2, batch_size=50)).fit(checkpoint_path=checkpoint)
    assert checkpoint.is_file() and history_dir(checkpoint).is_dir()

    artifacts.remove_checkpoint()

    assert not checkpoint.exists() and not history_dir(checkpoint).exists()
    remove_checkpoint(checkpoint)  # nothing left: quietly nothing to do
