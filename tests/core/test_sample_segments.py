"""A version's samples as segments of shards (`core.sample_store`): rows read across segments in
any order are the rows of the segments concatenated, removing rows splits the segments around
them, one whole shard opens as the shard itself, compacting copies the rows (and their known
flags) into one shard, and training streams batches from segments with
the same inputs as from memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.engine import Inputs
from core.sample_store import (
    RowReader,
    Segment,
    SegmentedRows,
    compact,
    flags_path,
    open_segments,
    segments_without,
    write_shard,
)


@pytest.fixture
def shards(tmp_path):
    first = np.arange(50 * 6, dtype=np.float32).reshape(50, 2, 3)
    second = -np.arange(30 * 6, dtype=np.float32).reshape(30, 2, 3)
    write_shard(tmp_path / "a.npy", first)
    write_shard(tmp_path / "b.npy", second)
    return tmp_path, first, second


def test_rows_across_segments_are_the_segments_concatenated(shards):
    data_dir, first, second = shards
    segments = [Segment("a.npy", 0, 10), Segment("b.npy", 5, 30), Segment("a.npy", 40, 40), Segment("a.npy", 12, 50)]
    expected = np.concatenate([first[0:10], second[5:30], first[12:50]])
    rows = open_segments(data_dir, segments)
    assert isinstance(rows, SegmentedRows) and rows.shape == expected.shape and len(rows) == 73
    assert rows.nbytes == expected.nbytes and rows.dtype == expected.dtype
    picks = np.array([72, 0, 9, 10, 34, 35, 36, 10, 71, 35])
    np.testing.assert_array_equal(RowReader(rows).read(picks), expected[picks])
    np.testing.assert_array_equal(rows[5:40], expected[5:40])
    np.testing.assert_array_equal(rows[-1], expected[-1])
    np.testing.assert_array_equal(rows[:, 1], expected[:, 1])
    np.testing.assert_array_equal(np.asarray(rows), expected)
    with pytest.raises(IndexError):
        RowReader(rows).read(np.array([73]))


def test_one_whole_shard_opens_as_the_shard_itself(shards):
    data_dir, first, _ = shards
    whole = open_segments(data_dir, [Segment("a.npy", 0, 50)])
    assert isinstance(whole, np.memmap)
    np.testing.assert_array_equal(whole, first)
    with pytest.raises(ValueError, match="not in shard"):
        open_segments(data_dir, [Segment("a.npy", 0, 51), Segment("b.npy", 0, 1)])


def test_compacting_segments_copies_their_rows_and_known_flags_into_one_shard(shards):
    data_dir, first, second = shards
    segments = [Segment("b.npy", 5, 30), Segment("a.npy", 0, 10), Segment("a.npy", 12, 50)]
    np.save(flags_path(data_dir / "a.npy"), np.arange(50) % 3 == 0)
    np.save(flags_path(data_dir / "b.npy"), np.arange(30) % 2 == 0)

    compacted = compact(data_dir, segments, data_dir / "c.npy")

    np.testing.assert_array_equal(compacted, np.concatenate([second[5:30], first[0:10], first[12:50]]))
    expected_flags = np.concatenate([np.arange(5, 30) % 2 == 0, np.arange(0, 10) % 3 == 0, np.arange(12, 50) % 3 == 0])
    np.testing.assert_array_equal(np.load(flags_path(data_dir / "c.npy")), expected_flags)
    flags_path(data_dir / "b.npy").unlink()  # a shard without known flags: the compacted one has none either
    compact(data_dir, segments, data_dir / "d.npy")
    assert not flags_path(data_dir / "d.npy").exists()


def test_removing_rows_splits_the_segments_around_them():
    segments = [Segment("a", 0, 10), Segment("b", 20, 25)]
    assert segments_without(segments, [0, 4, 9, 10, 14]) == [
        Segment("a", 1, 4), Segment("a", 5, 9), Segment("b", 21, 24),
    ]  # fmt: skip
    assert segments_without(segments, []) == segments
    assert segments_without(segments, range(15)) == [Segment("a", 0, 0)]  # the rows' shape stays known


def test_training_batches_streamed_from_segments_equal_those_from_memory(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (120, 1, 8, 8), dtype=np.uint8)
    write_shard(tmp_path / "parent.npy", images[:100])
    write_shard(tmp_path / "added.npy", images[100:])
    segments = segments_without([Segment("parent.npy", 0, 100), Segment("added.npy", 0, 20)], [3, 50])
    expected = np.delete(images, [3, 50], axis=0)
    monkeypatch.setattr(Inputs, "stream_above_bytes", 0)
    streamed = Inputs(open_segments(tmp_path, segments), "image", torch.device("cpu"), 8)
    monkeypatch.setattr(Inputs, "stream_above_bytes", 1 << 40)
    resident = Inputs(open_segments(tmp_path, segments), "image", torch.device("cpu"), 8)
    from_memory = Inputs(expected, "image", torch.device("cpu"), 8)
    assert streamed.reader is not None and resident.reader is None and len(streamed) == 118
    index = torch.tensor([117, 0, 3, 49, 50, 98, 99, 98])
    torch.testing.assert_close(streamed.batch(index), from_memory.batch(index), rtol=0, atol=0)
    torch.testing.assert_close(resident.batch(index), from_memory.batch(index), rtol=0, atol=0)
    torch.testing.assert_close(streamed.mean, from_memory.mean)
