"""Samples on disk (`core.sample_store`): images decoded straight into a shard give the same
dataset as a load into memory, rows read back in any order are the rows written, training
reads its batches from a shard larger than its budget with the same results as from memory, and
reading a shard again and again does not grow the process's memory by its size."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from core.engine import Inputs
from core.loaders import load_dataset
from core.sample_store import RowReader, ShardSink, shard_sink, write_shard


def _rgb_zip(path, count: int = 40):
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for i in range(count):
            png = io.BytesIO()
            size = (12, 10) if i % 5 else (7, 9)  # mixed sizes: the most common one wins
            Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(png, format="PNG")
            archive.writestr(f"{'ab'[i % 2]}/{i}.png", png.getvalue())
    return path


def test_images_decoded_into_a_shard_are_the_images_loaded_into_memory(tmp_path):
    source = _rgb_zip(tmp_path / "pets.zip")
    in_memory = load_dataset(source)
    fractions = []
    on_disk = load_dataset(source, sink=shard_sink(tmp_path / "shard.npy"), on_progress=fractions.append)
    assert isinstance(on_disk.x, np.memmap) and on_disk.x.shape == in_memory.x.shape == (40, 3, 10, 12)
    np.testing.assert_array_equal(np.asarray(on_disk.x), in_memory.x)
    assert on_disk.sample_ids == in_memory.sample_ids and (on_disk.y == in_memory.y).all()
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1
    np.testing.assert_array_equal(np.load(tmp_path / "shard.npy"), in_memory.x)  # a plain .npy file


def test_rows_read_back_in_any_order_are_the_rows_written(tmp_path):
    data = np.arange(500 * 6, dtype=np.float32).reshape(500, 2, 3)
    sink = ShardSink(tmp_path / "rows.npy", data.shape, data.dtype, chunk_bytes=7 * 24)  # chunks of 7 rows
    for i, row in enumerate(data):
        sink.put(i, row)
    reader = RowReader(sink.finish())
    rows = np.array([499, 3, 4, 5, 3, 0, 250, 251, 17])
    np.testing.assert_array_equal(reader.read(rows), data[rows])
    np.testing.assert_array_equal(reader.read_range(490, 600), data[490:])
    with pytest.raises(IndexError):
        reader.read(np.array([500]))
    reader.close()


def test_training_batches_from_a_shard_over_the_budget_equal_those_from_memory(tmp_path, monkeypatch):
    digits = load_dataset("digits", limit=300)
    shard = write_shard(tmp_path / "digits.npy", digits.x)
    resident = Inputs(digits.x, "image", torch.device("cpu"), 16)
    monkeypatch.setattr(Inputs, "stream_above_bytes", 0)
    streamed = Inputs(shard, "image", torch.device("cpu"), 16)
    assert streamed.reader is not None and resident.reader is None
    index = torch.tensor([5, 299, 0, 17, 17, 100])
    torch.testing.assert_close(streamed.batch(index), resident.batch(index), rtol=0, atol=0)
    torch.testing.assert_close(streamed.mean, resident.mean)


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def test_reading_a_shard_over_and_over_keeps_the_memory_of_one_batch(tmp_path):
    rows, row_shape = 4096, (3, 64, 64)  # 48 MiB of images
    sink = ShardSink(tmp_path / "big.npy", (rows, *row_shape), np.dtype(np.uint8))
    row = np.full(row_shape, 7, dtype=np.uint8)
    for i in range(rows):
        sink.put(i, row)
    reader = RowReader(sink.finish())
    before = _rss_mib()
    rng = np.random.default_rng(0)
    for _ in range(3):
        for batch in np.array_split(rng.permutation(rows), rows // 256):
            assert reader.read(batch)[-1, -1, -1, -1] == 7
    grown = _rss_mib() - before
    assert grown < 16, f"RSS grew by {grown:.0f} MiB reading a 48 MiB shard three times"
