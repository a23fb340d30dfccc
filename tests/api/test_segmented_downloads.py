"""A version whose samples are segments of shards (an append, a relabel with removals) downloads,
read from the shards a chunk at a time, as the samples it holds: the npz's arrays, the CSV's rows
and a class-folder zip's images (uploaded files as uploaded, appended ones as PNGs of their pixels)
are those of the same samples in memory."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
from PIL import Image

from core.loaders import load_dataset, writers


def npz_bytes(x: np.ndarray, ids: list[str], labels, class_names=None) -> bytes:
    buffer = io.BytesIO()
    named = {} if class_names is None else {"class_names": np.array(class_names)}
    np.savez(buffer, x=x, y=np.asarray(labels), sample_ids=np.array(ids), **named)
    return buffer.getvalue()


def upload(client, headers, filename: str, data: bytes) -> dict:
    response = client.post("/datasets", files={"file": (filename, data)}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def append(client, headers, dataset_id: int, filename: str, data: bytes) -> int:
    response = client.post(f"/datasets/{dataset_id}/versions/append", files={"file": (filename, data)}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["version"]


def download(client, headers, dataset_id: int, version: int, **params) -> bytes:
    response = client.get(f"/datasets/{dataset_id}/versions/{version}/download", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def remove(client, headers, dataset_id: int, indexes: list[int]) -> int:
    job = client.post("/jobs", json={"dataset_id": dataset_id, "epochs": 1}, headers=headers).json()
    for index in indexes:
        body = {"sample_index": index, "verdict": "remove"}
        assert client.post(f"/jobs/{job['id']}/decisions", json=body, headers=headers).status_code == 201
    relabeled = client.post(f"/datasets/{dataset_id}/versions/relabel", headers=headers)
    assert relabeled.status_code == 201, relabeled.text
    return relabeled.json()["version"]


def test_an_appended_and_trimmed_version_downloads_as_its_samples(client, alice, monkeypatch):
    monkeypatch.setattr(writers, "READ_CHUNK_BYTES", 5 * 64)  # 5 images a chunk: chunks cross segments
    digits = load_dataset("digits", limit=80)
    ids = [f"d{i}" for i in range(80)]
    dataset = upload(client, alice, "digits.npz", npz_bytes(digits.x[:50], ids[:50], digits.y[:50]))
    appended = append(client, alice, dataset["id"], "more.npz", npz_bytes(digits.x[50:], ids[50:], digits.y[50:]))
    trimmed = remove(client, alice, dataset["id"], [3, 49, 50, 70])
    kept = [i for i in range(80) if i not in (3, 49, 50, 70)]

    for version, rows in ((appended, list(range(80))), (trimmed, kept)):
        with np.load(io.BytesIO(download(client, alice, dataset["id"], version))) as arrays:
            np.testing.assert_array_equal(arrays["x"], digits.x[rows])
            assert arrays["sample_ids"].tolist() == [ids[i] for i in rows]
            assert arrays["y"].tolist() == digits.y[rows].tolist()


def test_an_appended_table_downloads_as_a_csv_of_its_rows(client, alice, monkeypatch):
    monkeypatch.setattr(writers, "READ_CHUNK_BYTES", 3 * 12)  # 3 rows a chunk
    x = (np.arange(40 * 3, dtype=np.float32).reshape(40, 3) / 8).astype(np.float32)
    labels, ids = np.arange(40) % 2, [f"r{i}" for i in range(40)]
    dataset = upload(client, alice, "rows.npz", npz_bytes(x[:25], ids[:25], labels[:25]))
    version = append(client, alice, dataset["id"], "more.npz", npz_bytes(x[25:], ids[25:], labels[25:]))

    rows = list(csv.DictReader(io.StringIO(download(client, alice, dataset["id"], version, format="csv").decode())))
    assert [row["sample_id"] for row in rows] == ids
    np.testing.assert_array_equal(np.array([[float(row[f"f{i}"]) for i in range(3)] for row in rows]), x)


def test_a_class_folder_zip_with_appended_images_downloads_every_image(client, alice):
    digits = load_dataset("digits")  # in file order: labels 0..9, 0..9, ...
    files = {}
    for i in range(12):
        buffer = io.BytesIO()
        Image.fromarray(digits.x[i, 0]).save(buffer, format="PNG")
        files[f"{digits.y[i]}/img-{i}.png"] = buffer.getvalue()
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as writing:
        for name, data in files.items():
            writing.writestr(name, data)
    dataset = upload(client, alice, "folders.zip", archive.getvalue())
    added = [f"new-{i}" for i in range(12, 16)]
    more = npz_bytes(digits.x[12:16], added, digits.y[12:16], digits.class_names)
    version = append(client, alice, dataset["id"], "more.npz", more)

    with zipfile.ZipFile(io.BytesIO(download(client, alice, dataset["id"], version))) as downloaded:
        got = {name: downloaded.read(name) for name in downloaded.namelist()}
    assert {name: got[name] for name in files} == files  # the uploaded files, byte for byte
    for offset, sample_id in enumerate(added):
        pixels = np.asarray(Image.open(io.BytesIO(got[f"{digits.y[12 + offset]}/{sample_id}.png"])))
        np.testing.assert_array_equal(pixels, digits.x[12 + offset, 0])
