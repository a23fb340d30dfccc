"""core.loaders.load_dataset's options: their checks, the requested modality and `limit`."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError, DatasetError
from core.loaders import load_dataset


def test_bad_options():
    with pytest.raises(ConfigError):
        load_dataset("digits", image_size=0)
    with pytest.raises(ConfigError):
        load_dataset("digits", limit=1)
    with pytest.raises(ConfigError):
        load_dataset("digits", modality="audio")
    with pytest.raises(DatasetError, match="not tabular"):
        load_dataset("digits", modality="tabular")


def test_digits_resized_and_limited():
    data = load_dataset("digits", image_size=16, limit=200)
    assert data.x.shape == (200, 1, 16, 16)
    assert np.bincount(data.y).min() >= 19
    assert load_dataset("digits", limit=200).sample_ids == data.sample_ids
