"""Embeddings mode: a frozen timm backbone (timm's tiny `test_resnet`, weights saved by the test)
embeds digits at 32 px once, the features are cached, and LiLAW trains a head on them with every
dynamics score."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import timm
import torch

from core.audit import AuditConfig, run_audit
from core.embeddings import HEADS
from core.errors import ConfigError
from core.loaders import load_dataset

BACKBONE = "test_resnet"
SAMPLES = 200


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", limit=SAMPLES)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "backbone.pth"
    torch.save(timm.create_model(BACKBONE, num_classes=0).state_dict(), path)
    return path


def embeddings_config(weights, **options) -> AuditConfig:
    values = {"embeddings_backbone": BACKBONE, "embeddings_weights": str(weights), "image_size": 32,
              "epochs": 3, "batch_size": 64, "device": "cpu", "inject_noise": "uniform:0.2", **options}  # fmt: skip
    return AuditConfig(**values)


def test_features_are_computed_once_and_the_head_gets_every_score(digits, weights, tmp_path):
    cache = tmp_path / "cache"
    epochs = []
    first = run_audit(digits, embeddings_config(weights), embeddings_dir=cache, on_epoch=epochs.append)
    info = first.dataset.meta["embeddings"]
    assert not info["cached"] and info["backbone"] == BACKBONE and info["dimensions"] == 96
    assert first.dataset.x.shape == (SAMPLES, 96) and first.model_name == HEADS["linear"]
    assert len(epochs) == 3 and all(len(e.sample_index) == SAMPLES for e in epochs)
    for name in ("w_alpha", "w_beta", "w_delta", "aum", "el2n", "forgetting", "datamaps_confidence"):
        assert first.scores[name].shape == (SAMPLES,) and np.isfinite(first.scores[name]).all()
    assert first.detection["aggregate"]["aum"]["auroc"] > 0.5  # the injected flips rank above chance
    cached = list(cache.iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npy"
    written = cached[0].stat().st_mtime_ns

    again = run_audit(digits, embeddings_config(weights, embeddings_head="mlp", seed=1), embeddings_dir=cache)
    assert again.dataset.meta["embeddings"]["cached"] and again.model_name == "mlp"
    np.testing.assert_array_equal(again.dataset.x, first.dataset.x)
    assert list(cache.iterdir()) == cached and cached[0].stat().st_mtime_ns == written


def test_other_weights_or_size_are_another_cache_entry(digits, weights, tmp_path):
    cache = tmp_path / "cache"
    run_audit(digits, embeddings_config(weights, epochs=1), embeddings_dir=cache)
    other = tmp_path / "other.pth"
    torch.manual_seed(1)
    torch.save(timm.create_model(BACKBONE, num_classes=0).state_dict(), other)
    result = run_audit(digits, embeddings_config(other, epochs=1), embeddings_dir=cache)
    assert not result.dataset.meta["embeddings"]["cached"]
    run_audit(digits, embeddings_config(weights, epochs=1, image_size=16), embeddings_dir=cache)
    assert len(list(cache.iterdir())) == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"embeddings_weights": None}, "needs the backbone's weights"),
        ({"model": "mlp"}, "leave model and weights unset"),
        ({"embeddings_head": "transformer"}, "unknown embeddings head"),
        ({"embeddings_weights": "/nonexistent/w.pth"}, "weights file not found"),
        ({"embeddings_backbone": "no-such-net"}, "unknown timm model"),
    ],
)
def test_bad_embeddings_options_are_config_errors(digits, weights, tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        run_audit(digits, embeddings_config(weights, **options), embeddings_dir=tmp_path)


def test_cli_embeddings_mode_caches_under_the_data_dir(weights, tmp_path):
    env = {**os.environ, "LILAW_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cli", "audit", "digits", "--limit", "150", "--embeddings", BACKBONE,
               "--weights", str(weights), "--image-size", "32", "--head", "mlp", "--epochs", "2",
               "--batch-size", "64", "--device", "cpu", "--out", str(tmp_path / "out")]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["config"]["embeddings_backbone"] == BACKBONE and summary["config"]["embeddings_head"] == "mlp"
    assert len(list((tmp_path / "data" / "artifacts" / "embeddings").glob("*.npy"))) == 1
