"""A version's segments of shards are read a chunk of rows at a time by the download writers and
by embeddings mode, and what they write is what they write from the same samples in memory: the
same .npy bytes, table rows, zip members and Parquet file; the same features and cache key."""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import timm
import torch

from core.dataset import AuditDataset
from core.embeddings import Backbone, cache_key, embed_dataset, file_sha256
from core.loaders import load_dataset, writers
from core.loaders.hf_parquet import hf_parquet_chunks, write_hf_parquet
from core.sample_store import Segment, SegmentedRows, open_segments, write_shard

BACKBONE = "test_resnet"
# Rows [0, 20) and [25, 60) of the first shard, then all 30 of the second: 85 samples.
SEGMENTS = [Segment("a.npy", 0, 20), Segment("a.npy", 25, 60), Segment("b.npy", 0, 30)]


def in_shards(tmp_path, x: np.ndarray) -> tuple[SegmentedRows, np.ndarray]:
    """`x`'s first 60 rows and its next 30 as two shards, opened as SEGMENTS; and those rows in memory."""
    write_shard(tmp_path / "a.npy", x[:60])
    write_shard(tmp_path / "b.npy", x[60:90])
    rows = open_segments(tmp_path, SEGMENTS)
    assert isinstance(rows, SegmentedRows)
    return rows, np.concatenate([x[:20], x[25:60], x[60:90]])


def dataset_of(x, modality: str) -> AuditDataset:
    count = len(x)
    return AuditDataset(
        name="segmented", modality=modality, x=x, y=np.arange(count) % 3, class_names=["a", "b", "c"],
        sample_ids=[f"{'abc'[i % 3]}/{i}.png" for i in range(count)], is_mislabeled=np.arange(count) % 5 == 0,
    )  # fmt: skip


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.fixture
def images(tmp_path):
    x = load_dataset("digits", limit=90).x  # uint8 [90, 1, 8, 8]
    shards, resident = in_shards(tmp_path, x)
    return dataset_of(shards, "image"), dataset_of(resident, "image")


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(writers, "READ_CHUNK_BYTES", 7 * 64)  # 7 images a chunk: chunks end mid-segment


def test_downloads_written_from_shards_equal_those_written_from_memory(images, small_chunks, tmp_path):
    segmented, resident = images
    for write in (writers.npz_file, lambda d: writers.class_folder_zip(d, lambda i: None),
                  lambda d: writers.labels_csv_zip(d, lambda i: None)):  # fmt: skip
        streamed = members(b"".join(write(segmented)))
        assert streamed == members(b"".join(write(resident)))
    npz = b"".join(writers.npz_file(segmented))
    saved = io.BytesIO()
    np.save(saved, resident.x)  # what the npz held when x was written whole
    assert members(npz)["x.npy"] == saved.getvalue()
    with np.load(io.BytesIO(npz)) as arrays:
        np.testing.assert_array_equal(arrays["x"], resident.x)
        assert arrays["sample_ids"].tolist() == resident.sample_ids

    buffer = io.BytesIO()  # how a Hugging Face download was built, in memory
    write_hf_parquet(resident, buffer)
    assert b"".join(hf_parquet_chunks(segmented)) == buffer.getvalue()

    (tmp_path / "table").mkdir()
    shards, rows = in_shards(tmp_path / "table", np.arange(90 * 6, dtype=np.float32).reshape(90, 6) / 7)
    names = [f"f{i}" for i in range(6)]
    tables = [b"".join(writers.table_file(dataset_of(x, "tabular"), names, lambda i: None)) for x in (shards, rows)]
    assert tables[0] == tables[1] and tables[0].count(b"\n") == 86  # the header and every row


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "backbone.pth"
    torch.save(timm.create_model(BACKBONE, num_classes=0).state_dict(), path)
    return path


def test_embeddings_of_shards_equal_those_of_the_same_images_in_memory(images, weights, tmp_path):
    segmented, resident = images
    backbone = Backbone(BACKBONE, weights, image_size=16, batch_size=16, device="cpu")
    key = cache_key(resident.x, backbone, file_sha256(weights))
    assert cache_key(segmented.x, backbone, file_sha256(weights)) == key

    from_memory = embed_dataset(resident, backbone, tmp_path / "memory")
    from_shards = embed_dataset(segmented, backbone, tmp_path / "shards")
    assert not from_shards.meta["embeddings"]["cached"] and from_shards.x.shape == (85, 96)
    np.testing.assert_array_equal(from_shards.x, from_memory.x)
    assert [path.name for path in (tmp_path / "shards").iterdir()] == [f"{key}.npy"]

    # The same images in shards find the features cached for them in memory, and the other way.
    assert embed_dataset(segmented, backbone, tmp_path / "memory").meta["embeddings"]["cached"]
    relabeled = replace(resident, y=np.zeros(85, dtype=np.int64))
    assert embed_dataset(relabeled, backbone, tmp_path / "shards").meta["embeddings"]["cached"]
