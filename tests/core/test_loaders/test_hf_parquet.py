"""Hugging Face `datasets` layouts: a Parquet file with an `image` {bytes, path} column, a zipped
save_to_disk folder (Arrow IPC streams), both built here with pyarrow as `datasets` writes them,
and `write_hf_parquet` read back."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core.errors import DatasetError
from core.loaders import load_dataset
from core.loaders.hf_parquet import hf_parquet_chunks, write_hf_parquet

CLASS_NAMES = [f"digit-{d}" for d in range(10)]


def digits_png_table(count: int = 40, with_ids: bool = True) -> tuple[pa.Table, np.ndarray]:
    """The first `count` digits as PNG bytes in the datasets Image layout, with `datasets`'
    features metadata (label a ClassLabel); returns the table and the images [N, 1, 8, 8]."""
    digits = load_dataset("digits", limit=count)
    encoded = []
    for sample in digits.x:
        buffer = io.BytesIO()
        Image.fromarray(sample[0]).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    columns = {
        "image": pa.StructArray.from_arrays(
            [pa.array(encoded, pa.binary()), pa.array([f"{i}.png" for i in range(count)])], names=["bytes", "path"]
        ),
        "label": pa.array(digits.y, pa.int64()),
    }
    if with_ids:
        columns["id"] = pa.array([f"img-{i:03d}" for i in range(count)])
    features = {"image": {"_type": "Image"}, "label": {"names": CLASS_NAMES, "_type": "ClassLabel"}}
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return pa.table(columns).replace_schema_metadata(metadata), digits.x


def parquet_file(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


def arrow_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def saved_dataset_members(table: pa.Table, folder: str = "") -> dict[str, bytes]:
    """The files `Dataset.save_to_disk` writes, two arrow shards."""
    half = table.num_rows // 2
    shards = {"data-00000-of-00002.arrow": table.slice(0, half), "data-00001-of-00002.arrow": table.slice(half)}
    state = {"_data_files": [{"filename": name} for name in shards], "_fingerprint": "0", "_split": None}
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    members = {f"{folder}{name}": arrow_stream(shard) for name, shard in shards.items()}
    members[f"{folder}state.json"] = json.dumps(state).encode()
    members[f"{folder}dataset_info.json"] = json.dumps({"features": features, "description": ""}).encode()
    return members


def zip_file(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_parquet_images_labels_and_ids(tmp_path):
    table, images = digits_png_table()
    dataset = load_dataset(parquet_file(tmp_path / "digits.parquet", table))
    assert dataset.modality == "image" and dataset.meta["format"] == "hf-parquet"
    assert dataset.class_names == CLASS_NAMES  # from the ClassLabel feature, not the values seen
    np.testing.assert_array_equal(dataset.x, images)
    np.testing.assert_array_equal(dataset.y, table.column("label").to_numpy())
    assert dataset.sample_ids == [f"img-{i:03d}" for i in range(40)]


def test_parquet_without_ids_uses_the_row_index_and_reads_flags(tmp_path):
    table, _ = digits_png_table(with_ids=False)
    table = table.append_column("is_mislabeled", pa.array([i % 5 == 0 for i in range(40)]))
    dataset = load_dataset(parquet_file(tmp_path / "digits.pq", table))
    assert dataset.sample_ids == [str(i) for i in range(40)]
    assert dataset.is_mislabeled.sum() == 8


def test_a_plain_table_parquet_is_still_tabular(tmp_path):
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"f1": [0.1, 0.2, 0.3, 0.4], "label": ["a", "b", "a", "b"]}), path)
    assert load_dataset(path).modality == "tabular"


def test_saved_dataset_zip_reads_every_shard(tmp_path):
    table, images = digits_png_table()
    dataset = load_dataset(zip_file(tmp_path / "saved.zip", saved_dataset_members(table, "digits_ds/")))
    assert dataset.meta["format"] == "hf-save-to-disk" and dataset.class_names == CLASS_NAMES
    np.testing.assert_array_equal(dataset.x, images)
    assert dataset.sample_ids == [f"img-{i:03d}" for i in range(40)]


def test_saved_dataset_dict_audits_train_and_keeps_test(tmp_path):
    table, _ = digits_png_table()
    members = {"dataset_dict.json": json.dumps({"splits": ["train", "test"]}).encode()}
    members |= saved_dataset_members(table.slice(0, 30), "train/") | saved_dataset_members(table.slice(30), "test/")
    dataset = load_dataset(zip_file(tmp_path / "dict.zip", members))
    assert len(dataset) == 30 and len(dataset.test) == 10


def test_write_then_read_is_the_same_dataset(tmp_path):
    original = load_dataset("digits", limit=60)
    path = tmp_path / "out.parquet"
    write_hf_parquet(original, path, row_group_rows=25)
    assert pq.ParquetFile(path).num_row_groups == 3
    (tmp_path / "streamed.parquet").write_bytes(b"".join(hf_parquet_chunks(original, row_group_rows=25)))
    for back in (load_dataset(path), load_dataset(tmp_path / "streamed.parquet")):
        np.testing.assert_array_equal(back.x, original.x)
        np.testing.assert_array_equal(back.y, original.y)
        assert back.class_names == original.class_names and back.sample_ids == original.sample_ids
    rgb = load_dataset(zip_file(tmp_path / "rgb.zip", _rgb_members()))
    buffer = io.BytesIO()
    write_hf_parquet(rgb, buffer)
    (tmp_path / "rgb.parquet").write_bytes(buffer.getvalue())
    again = load_dataset(tmp_path / "rgb.parquet")
    np.testing.assert_array_equal(again.x, rgb.x)
    assert again.sample_ids == rgb.sample_ids and again.class_names == rgb.class_names


def _rgb_members() -> dict[str, bytes]:
    members = {}
    for cls, color in (("red", (200, 10, 10)), ("blue", (10, 10, 200))):
        for i in range(3):
            buffer = io.BytesIO()
            Image.new("RGB", (5, 4), tuple(c + 10 * i for c in color)).save(buffer, format="PNG")
            members[f"{cls}/{i}.png"] = buffer.getvalue()
    return members


def test_bad_files_name_the_problem(tmp_path):
    table, _ = digits_png_table(count=10)
    no_bytes = table.set_column(
        0, "image", pa.StructArray.from_arrays([pa.nulls(10, pa.binary()), pa.array(["a.png"] * 10)], names=["bytes", "path"])
    )
    with pytest.raises(DatasetError, match=r"row 0: the image has no bytes \(path 'a.png' only\)"):
        load_dataset(parquet_file(tmp_path / "paths.parquet", no_bytes))
    out_of_range = table.set_column(1, "label", pa.array([12] * 10, pa.int64()))
    with pytest.raises(DatasetError, match=r"class indices 0..9, found 12..12"):
        load_dataset(parquet_file(tmp_path / "labels.parquet", out_of_range))
    with pytest.raises(DatasetError, match="more than 100 pixels"):
        load_dataset(parquet_file(tmp_path / "ok.parquet", table), max_pixels=100)
    members = saved_dataset_members(table)
    members["data-00001-of-00002.arrow"] = b"not arrow at all"
    with pytest.raises(DatasetError, match="data-00001-of-00002.arrow is not a readable Arrow IPC"):
        load_dataset(zip_file(tmp_path / "broken.zip", members))
    del members["data-00001-of-00002.arrow"]
    with pytest.raises(DatasetError, match="named in state.json is not in the archive"):
        load_dataset(zip_file(tmp_path / "missing.zip", members))


def test_the_memory_budgets_stop_a_load_before_it_decodes(tmp_path, monkeypatch):
    import core.loaders.hf_parquet as hf
    import core.loaders.images as images

    table, _ = digits_png_table(count=10)
    parquet = parquet_file(tmp_path / "ok.parquet", table)
    saved = zip_file(tmp_path / "saved.zip", saved_dataset_members(table))
    monkeypatch.setattr(hf, "MAX_PARQUET_BYTES", 100)
    with pytest.raises(DatasetError, match="bytes of data uncompressed, more than the 100 allowed"):
        load_dataset(parquet)
    with pytest.raises(DatasetError, match="the arrow files expand to .* more than the 100 allowed"):
        load_dataset(saved)
    monkeypatch.undo()
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 63)
    with pytest.raises(DatasetError, match="row 0 is 8x8 pixels, more than the 63 allowed per image"):
        load_dataset(parquet)
    monkeypatch.undo()
    monkeypatch.setattr(images, "MAX_DECODED_IMAGE_BYTES", 64 * 5)
    with pytest.raises(DatasetError, match=r"decode to more than 320 bytes in all \(at row 5\)"):
        load_dataset(parquet)
