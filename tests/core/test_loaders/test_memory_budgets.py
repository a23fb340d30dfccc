"""One file's parse stays within the budgets of `core.loaders.limits`: what a file declares
(zip member sizes, image headers, .npy headers) is checked before it is inflated, decoded or
allocated, so a small upload that expands to gigabytes is refused with a clear error while the
reader's memory stays flat."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from core.errors import DatasetError
from core.loaders import load_dataset
from core.loaders import npz as npz_loader
from core.loaders.limits import MAX_ARRAY_BYTES, MAX_IMAGE_PIXELS, MAX_LABELS_CSV_BYTES, MAX_TABLE_BYTES
from tests.core.test_loaders.budget_files import huge_png_zip, huge_shape_npz, labels_bomb_zip

REPO_ROOT = Path(__file__).resolve().parents[3]
# What a parse may add to the process's peak memory (the imports are measured before it).
RSS_ALLOWANCE_MIB = 120


def peak_rss_growth_mib(path: Path) -> tuple[float, str]:
    """Peak RSS growth (MiB) of a fresh Python process loading `path`, and the error it got."""
    script = textwrap.dedent(
        f"""
        import resource
        from core.loaders import load_dataset
        from core.errors import DatasetError
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            load_dataset({str(path)!r})
            message = "accepted"
        except DatasetError as error:
            message = error.message
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) / 1024)
        print(message)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=300,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    growth, message = done.stdout.strip().split("\n", 1)
    return float(growth), message


def test_a_labels_csv_that_expands_past_its_budget_is_refused_before_it_is_inflated(tmp_path):
    bomb = labels_bomb_zip(tmp_path / "labels-bomb.zip", expanded_bytes=MAX_LABELS_CSV_BYTES + 16 * 1024**2)
    assert bomb.stat().st_size < MAX_LABELS_CSV_BYTES / 4
    growth, message = peak_rss_growth_mib(bomb)
    assert "labels file 'labels.csv' expands to" in message and f"more than the {MAX_LABELS_CSV_BYTES}" in message
    assert growth < RSS_ALLOWANCE_MIB


def test_huge_pngs_are_refused_from_their_headers_before_decoding(tmp_path):
    archive = huge_png_zip(tmp_path / "huge.zip")
    assert archive.stat().st_size < 4 * 1024**2
    growth, message = peak_rss_growth_mib(archive)
    assert "13000x13000 pixels" in message and f"more than the {MAX_IMAGE_PIXELS} allowed per image" in message
    assert growth < RSS_ALLOWANCE_MIB


def test_an_npz_header_claiming_a_huge_shape_is_refused_before_allocation(tmp_path):
    with pytest.raises(DatasetError, match=r"claims shape \(1000000000000, 1000\).* holds 64 bytes"):
        load_dataset(huge_shape_npz(tmp_path / "huge.npz"))


def test_npz_arrays_over_the_budget_are_refused(tmp_path, monkeypatch):
    budget = 1024**2  # the budget scaled down, so that the test writes 1 MiB, not 512
    monkeypatch.setattr(npz_loader, "MAX_ARRAY_BYTES", budget)
    path = tmp_path / "big.npz"
    rows = budget // (8 * 16) + 1
    np.savez(path, x=np.ones((rows, 16)), y=np.arange(rows) % 2)
    with pytest.raises(DatasetError, match=f"more than the {budget} bytes allowed"):
        load_dataset(path)
    np.savez(path, x=np.ones((rows // 2, 16)), y=np.arange(rows // 2) % 2)
    assert len(load_dataset(path)) == rows // 2
    assert MAX_ARRAY_BYTES == 512 * 1024**2


def test_a_csv_table_over_its_budget_is_refused_before_parsing(tmp_path):
    path = tmp_path / "big.csv"
    with path.open("wb") as handle:
        handle.write(b"f1,label\n")
        handle.truncate(MAX_TABLE_BYTES + 1)
    with pytest.raises(DatasetError, match=f"more than the {MAX_TABLE_BYTES} allowed"):
        load_dataset(path)
