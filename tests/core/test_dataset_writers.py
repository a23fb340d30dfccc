"""core.loaders.writers: datasets written back in the layouts the loaders read, loaded back into
the same samples."""

from __future__ import annotations

import io
import zipfile

import numpy as np
from PIL import Image

from core.dataset import AuditDataset
from core.loaders import load_dataset
from core.loaders.writers import class_folder_zip, labels_csv_zip, npz_file


def images(ids: list[str], labels: list[int], flags=None) -> AuditDataset:
    x = np.stack([np.full((1, 4, 4), 40 * i, dtype=np.uint8) for i in range(len(ids))])
    return AuditDataset(
        name="tiny", modality="image", x=x, y=np.array(labels), class_names=["cat", "dog"], sample_ids=ids,
        is_mislabeled=flags,
    )  # fmt: skip


def written(chunks) -> bytes:
    return b"".join(chunks)


def test_class_folders_keep_a_top_folder_and_never_clash(tmp_path):
    dataset = images(["pets/cat/1.png", "pets/dog/1.png", "pets/dog/2.jpg"], [1, 1, 0])
    originals = {0: b"original png bytes"}
    data = written(class_folder_zip(dataset, originals.get))
    archive = zipfile.ZipFile(io.BytesIO(data))
    # The relabelled cat/1.png meets dog/1.png: one of them gets a suffix. Images without their
    # uploaded bytes are PNGs of their pixels, named .png.
    assert archive.namelist() == ["pets/dog/1.png", "pets/dog/1-1.png", "pets/cat/2.png"]
    assert archive.read("pets/dog/1.png") == b"original png bytes"
    pixels = np.asarray(Image.open(io.BytesIO(archive.read("pets/cat/2.png"))))
    assert np.array_equal(pixels, dataset.x[2, 0])


def test_labels_csv_zip_and_npz_load_back(tmp_path):
    dataset = images(["a/1.png", "a/2.png", "b/3.png"], [0, 1, 1], flags=np.array([False, True, False]))
    path = tmp_path / "tiny.zip"
    path.write_bytes(written(labels_csv_zip(dataset, lambda index: None)))
    loaded = load_dataset(path)
    assert loaded.sample_ids == dataset.sample_ids and loaded.is_mislabeled.tolist() == [False, True, False]
    assert [loaded.class_names[y] for y in loaded.y] == ["cat", "dog", "dog"]

    path = tmp_path / "tiny.npz"
    path.write_bytes(written(npz_file(dataset)))
    loaded = load_dataset(path)
    assert loaded.sample_ids == dataset.sample_ids and np.array_equal(loaded.x, dataset.x)
    assert loaded.class_names == ["cat", "dog"] and loaded.y.tolist() == [0, 1, 1]
