"""A trusted set (reviewers' verdicts) in training: LiLAW's meta-validation split, FBR's clean set,
and `lilaw-audit audit --trusted FILE`. Tiny digits runs of a few epochs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from cli.main import main
from core.audit import AuditConfig, run_audit
from core.dataset import trusted_set
from core.dynamics import SPLIT_TRAIN, SPLIT_VAL
from core.engine import Trainer
from core.errors import ConfigError, DatasetError
from core.loaders import load_dataset

N = 240


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=N)


def _trusted(dataset, count=40, seed=0):
    """`count` samples, as evenly over the classes as it goes, with their (clean) labels."""
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(dataset.y == c)) for c in range(dataset.num_classes)]
    index = [int(members[k]) for k in range(count) for members in per_class if k < len(members)][:count]
    return {i: int(dataset.y[i]) for i in index}


def test_with_lilaw_the_trusted_samples_are_the_meta_validation_split_with_their_trusted_labels(digits):
    trusted = _trusted(digits)
    relabelled = next(iter(trusted))
    trusted[relabelled] = (int(digits.y[relabelled]) + 1) % digits.num_classes  # a reviewer's correction
    config = AuditConfig(epochs=2, batch_size=64, val_fraction=0.3)  # the fraction is not used
    trainer = Trainer(digits, config, trusted=trusted)
    assert set(np.flatnonzero(trainer.split == SPLIT_VAL)) == set(trusted)
    assert set(trainer.val_index.tolist()) == set(trusted)
    assert trainer.meta_labels[relabelled] == trusted[relabelled] != trainer.labels[relabelled]

    meta_batches = []
    original = trainer._next_meta_batch
    trainer._next_meta_batch = lambda: meta_batches.append(original()) or meta_batches[-1]
    result = trainer.fit()
    assert meta_batches and set(torch.cat(meta_batches).tolist()) <= set(trusted)
    assert not np.allclose(result.trajectory[-1, 2:], [10, 2, 6])  # the meta steps ran
    assert result.fbr is None


def test_fbr_trains_with_its_weights_and_records_agreement_per_sample_per_epoch(digits):
    trusted = _trusted(digits)
    result = run_audit(digits, AuditConfig(epochs=3, batch_size=64, weighting="fbr", inject_noise="uniform:0.3"),
                       trusted=trusted)
    agreement, weight = result.fbr["fbr_agreement"], result.fbr["fbr_weight"]
    assert agreement.shape == weight.shape == (3, N)
    train, val = result.split == SPLIT_TRAIN, result.split == SPLIT_VAL
    assert set(np.flatnonzero(val)) == set(trusted)
    assert np.isfinite(agreement).all()  # every class has trusted samples here
    assert np.allclose(weight[0, train], 0.5)  # the warm-up epoch
    later = weight[1:, train]
    assert ((later == 0) | ((later > 0.5) & (later <= 1))).all() and (later == 0).any() and (later == 1).any()
    assert np.isnan(weight[:, val]).all()  # trusted samples are held out, not trained on
    # Zero weight exactly where the agreement is not positive (after the warm-up).
    assert np.array_equal(later == 0, agreement[1:, train] <= 0)
    # W_α, W_β, W_δ are recorded as under weighting="none": α, β, δ never move.
    assert np.allclose(result.trajectory[:, 2:], [10, 2, 6]) and result.history.w_alpha.shape == (3, N)
    # Agreement is a suspicion score: injected flips have lower agreement on average.
    score = result.fbr_agreement_score
    flipped = result.dataset.is_mislabeled & train
    assert score[flipped].mean() > score[train & ~result.dataset.is_mislabeled].mean()


def test_fbr_without_a_trusted_set_or_with_one_class_is_refused(digits):
    with pytest.raises(ConfigError, match="needs a trusted set"):
        Trainer(digits, AuditConfig(epochs=1, weighting="fbr"))
    one_class = {i: 0 for i in np.flatnonzero(digits.y == 0)[:5].tolist()}
    with pytest.raises(ConfigError, match="at least 2 classes"):
        Trainer(digits, AuditConfig(epochs=1, weighting="fbr"), trusted=one_class)
    with pytest.raises(ConfigError, match="out of range"):
        Trainer(digits, AuditConfig(epochs=1), trusted={N + 5: 0})


def test_trusted_set_by_sample_id_takes_class_names_or_indices(digits):
    ids = digits.sample_ids
    name = digits.class_names[3]
    assert trusted_set(digits, {ids[0]: name, ids[1]: "7"}) == {0: 3, 1: 7}
    with pytest.raises(DatasetError, match="not-a-sample"):
        trusted_set(digits, {"not-a-sample": "1", ids[0]: "1"})
    with pytest.raises(DatasetError, match="'zebra'"):
        trusted_set(digits, {ids[0]: "zebra"})


def test_audit_cli_with_a_trusted_file_end_to_end_and_bad_ids_exit_2(digits, tmp_path, capsys):
    trusted = _trusted(digits, count=30)
    path = tmp_path / "trusted.csv"
    path.write_text("sample_id,label\n" + "".join(
        f"{digits.sample_ids[i]},{digits.class_names[c]}\n" for i, c in trusted.items()))
    out = tmp_path / "run"
    code = main(["audit", "digits", "--limit", str(N), "--epochs", "2", "--batch-size", "64",
                 "--weighting", "fbr", "--trusted", str(path), "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"]["num_trusted"] == 30 and summary["dataset"]["num_validation"] == 30
    dynamics = np.load(out / "dynamics.npz", allow_pickle=False)
    assert dynamics["fbr_agreement"].shape == dynamics["fbr_weight"].shape == (2, N)
    with open(out / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N and all(np.isfinite(float(row["fbr_agreement"])) for row in rows)

    bad = tmp_path / "bad.csv"
    bad.write_text(f"{digits.sample_ids[0]},1\nno-such-id,2\nalso-missing,3\n")
    capsys.readouterr()
    assert main(["audit", "digits", "--limit", str(N), "--epochs", "1", "--trusted", str(bad),
                 "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "no-such-id" in err and "also-missing" in err

    assert main(["audit", "digits", "--limit", str(N), "--epochs", "1", "--weighting", "fbr",
                 "--out", str(tmp_path / "none")]) == 2
    assert "--trusted" in capsys.readouterr().err


def test_an_fbr_run_resumed_from_its_checkpoint_keeps_every_epochs_agreement(digits, tmp_path):
    from core.engine import AuditCancelled

    trusted, config = _trusted(digits), AuditConfig(epochs=3, batch_size=64, weighting="fbr", seed=3)
    uninterrupted = Trainer(digits, config, trusted=trusted).fit()
    checkpoint, seen = tmp_path / "fbr.ckpt", []
    with pytest.raises(AuditCancelled):
        Trainer(digits, config, trusted=trusted).fit(
            on_epoch=seen.append, checkpoint_path=checkpoint, should_stop=lambda: len(seen) >= 2)
    resumed = Trainer(digits, config, trusted=trusted).fit(checkpoint_path=checkpoint)
    for name in ("fbr_agreement", "fbr_weight"):
        assert resumed.fbr[name].shape == (3, N)
        np.testing.assert_allclose(resumed.fbr[name], uninterrupted.fbr[name], rtol=1e-4, atol=1e-5)


def test_the_fbr_schedule_alpha0_then_zero_and_the_warm_up(digits):
    from core.audit_config import FbrConfig

    config = AuditConfig(epochs=3, weighting="fbr", fbr=FbrConfig(alpha0_epochs=1, warmup_epochs=2))
    trainer = Trainer(digits, config, trusted=_trusted(digits))
    trainer._start_fbr_epoch(1)
    assert trainer._fbr_epoch["alpha0"] == pytest.approx(1 / 9) and trainer._fbr_epoch["warm"]
    assert trainer._fbr_epoch["clean"][0].shape[0] == 40  # the clean features, one row per trusted sample
    trainer._start_fbr_epoch(3)
    assert trainer._fbr_epoch["alpha0"] == 0.0 and not trainer._fbr_epoch["warm"]
    with pytest.raises(ConfigError, match="alpha0"):
        AuditConfig(weighting="fbr", fbr=FbrConfig(alpha0=-1)).validate()
    assert AuditConfig.from_dict(config.to_dict()).fbr == config.fbr
