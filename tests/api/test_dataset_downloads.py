"""Closing the loop on a dataset: its images moved to the right class folder and re-uploaded keep
their ids (and the decisions on them), and a version downloads in the format the dataset was
uploaded in, with its labels, so that it parses back into the same samples."""

from __future__ import annotations

import csv
import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from core.loaders import load_dataset

CLASSES = ("0", "1", "2")
PER_CLASS = 6
# Images of class 1 filed in folder 2: the label errors a reviewer fixes.
MISFILED = ("1/img-1-0.png", "1/img-1-1.png")


def digit_pngs() -> dict[str, bytes]:
    """{'<class>/img-<class>-<i>.png': PNG bytes} of PER_CLASS distinct digits per class."""
    digits = load_dataset("digits")
    files = {}
    for label in CLASSES:
        picked = np.flatnonzero(digits.y == int(label))[:PER_CLASS]
        for i, index in enumerate(picked):
            buffer = io.BytesIO()
            Image.fromarray(digits.x[index, 0]).save(buffer, format="PNG")
            files[f"{label}/img-{label}-{i}.png"] = buffer.getvalue()
    return files


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def misfiled(files: dict[str, bytes]) -> dict[str, bytes]:
    """The files with MISFILED moved from folder 1 to folder 2."""
    return {name.replace("1/", "2/", 1) if name in MISFILED else name: data for name, data in files.items()}


def upload(client, headers, name: str, filename: str, data: bytes) -> dict:
    response = client.post("/datasets", files={"file": (filename, data)}, data={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def decide_relabels(client, headers, dataset: dict, relabels: dict[str, str]) -> int:
    """A job on the dataset's latest version and a relabel decision per {sample id: label}."""
    job = client.post("/jobs", json={"dataset_id": dataset["id"], "epochs": 1}, headers=headers).json()
    version = dataset["versions"][-1]["version"]
    ids = sample_ids(client, headers, dataset["id"], version)
    for sample_id, label in relabels.items():
        body = {"sample_index": ids.index(sample_id), "verdict": "relabel", "label": label}
        response = client.post(f"/jobs/{job['id']}/decisions", json=body, headers=headers)
        assert response.status_code == 201, response.text
    return job["id"]


def sample_ids(client, headers, dataset_id: int, version: int) -> list[str]:
    """The version's sample ids in sample order, read from its npz download."""
    data = download(client, headers, dataset_id, version, format="npz")
    with np.load(io.BytesIO(data)) as arrays:
        return arrays["sample_ids"].tolist()


def download(client, headers, dataset_id: int, version: int, **params) -> bytes:
    response = client.get(f"/datasets/{dataset_id}/versions/{version}/download", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def reloaded(tmp_path, filename: str, data: bytes):
    path = tmp_path / filename
    path.write_bytes(data)
    loaded = load_dataset(path)
    return {sample_id: loaded.class_names[label] for sample_id, label in zip(loaded.sample_ids, loaded.y)}


def test_images_moved_to_their_class_folder_keep_their_ids_and_decisions(client, alice):
    files = digit_pngs()
    first = upload(client, alice, "folders", "folders.zip", zipped(misfiled(files)))
    moved = {name.replace("1/", "2/", 1): "1" for name in MISFILED}
    decide_relabels(client, alice, first, moved)

    second = upload(client, alice, "folders", "folders.zip", zipped(files))
    dataset_id = second["id"]
    diff = client.get(f"/datasets/{dataset_id}/versions/diff", params={"base": 1}, headers=alice).json()
    assert (diff["num_added"], diff["num_removed"], diff["num_relabeled"]) == (0, 0, len(MISFILED))
    assert {(r["sample_id"], r["old_label"], r["new_label"]) for r in diff["relabeled"]} == {
        (sample_id, "2", "1") for sample_id in moved
    }
    assert second["versions"][-1]["change"]["num_carried_ids"] == len(MISFILED)

    # The decisions made on version 1 attach to the moved samples in a job of version 2.
    job = client.post("/jobs", json={"dataset_id": dataset_id, "epochs": 1}, headers=alice).json()
    decided = client.get(f"/jobs/{job['id']}/decisions", headers=alice).json()["samples"]
    assert {(sample["sample_id"], sample["label"], sample["outcome"]) for sample in decided} == {
        (sample_id, "1", "1") for sample_id in moved
    }

    # The moved images are still served from the new zip, in their new folder.
    archive = zipfile.ZipFile(io.BytesIO(download(client, alice, dataset_id, 2)))
    assert {name: archive.read(name) for name in archive.namelist()} == files


def test_the_relabel_version_of_a_class_folder_zip_downloads_in_corrected_folders(client, alice, tmp_path):
    files = digit_pngs()
    uploaded = misfiled(files)
    dataset = upload(client, alice, "folders", "folders.zip", zipped(uploaded))
    decide_relabels(client, alice, dataset, {name.replace("1/", "2/", 1): "1" for name in MISFILED})
    relabeled = client.post(f"/datasets/{dataset['id']}/versions/relabel", headers=alice).json()

    response = client.get(f"/datasets/{dataset['id']}/versions/{relabeled['version']}/download", headers=alice)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert 'filename="folders-v2.zip"' in response.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    # Every file is the uploaded one, byte for byte, in its corrected class's folder.
    assert {name: archive.read(name) for name in archive.namelist()} == files

    labels = reloaded(tmp_path, "corrected.zip", response.content)
    assert labels == {name: name.split("/")[0] for name in files}

    # Uploaded again, it is the relabel version's samples with their ids: nothing added or removed.
    again = upload(client, alice, "folders", "corrected.zip", response.content)
    diff = client.get(f"/datasets/{dataset['id']}/versions/diff", params={"base": 2}, headers=alice).json()
    assert (diff["num_added"], diff["num_removed"], diff["num_relabeled"]) == (0, 0, 0)
    assert again["versions"][-1]["num_samples"] == len(files)


def test_a_zip_with_labels_csv_downloads_with_a_corrected_labels_csv(client, alice, tmp_path):
    images = {f"images/{i}.png": data for i, data in enumerate(digit_pngs().values())}
    given = {name: str(i // PER_CLASS) for i, name in enumerate(images)}
    given["images/0.png"] = "2"  # a label error
    table = "file,label\n" + "".join(f"{name},{label}\n" for name, label in given.items())
    dataset = upload(client, alice, "table", "table.zip", zipped({**images, "labels.csv": table.encode()}))
    decide_relabels(client, alice, dataset, {"images/0.png": "0"})
    relabeled = client.post(f"/datasets/{dataset['id']}/versions/relabel", headers=alice).json()

    data = download(client, alice, dataset["id"], relabeled["version"])
    archive = zipfile.ZipFile(io.BytesIO(data))
    rows = list(csv.DictReader(io.StringIO(archive.read("labels.csv").decode())))
    assert {row["file"]: row["label"] for row in rows} == {**given, "images/0.png": "0"}
    assert all(archive.read(name) == content for name, content in images.items())
    assert reloaded(tmp_path, "table.zip", data) == {**given, "images/0.png": "0"}


def test_a_csv_downloads_as_a_csv_with_the_corrected_labels_and_its_values(client, alice, tmp_path):
    text = "f1,f2,label\n0.1,2.5,a\n0.30000001,4,b\n5,6e-3,a\n7,8,b\n"
    dataset = upload(client, alice, "rows", "rows.csv", text.encode())
    ids = sample_ids(client, alice, dataset["id"], 1)
    decide_relabels(client, alice, dataset, {ids[0]: "b"})
    relabeled = client.post(f"/datasets/{dataset['id']}/versions/relabel", headers=alice).json()

    data = download(client, alice, dataset["id"], relabeled["version"])
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    assert [(row["f1"], row["f2"], row["label"]) for row in rows] == [
        ("0.1", "2.5", "b"), ("0.30000001", "4", "b"), ("5", "6e-3", "a"), ("7", "8", "b"),
    ]  # fmt: skip
    assert reloaded(tmp_path, "rows.csv", data) == dict(zip(ids, ["b", "b", "a", "b"]))


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_builtin_downloads_as_an_npz_that_loads_back(client, alice, tmp_path):
    response = client.post("/datasets", json={"builtin": "digits"}, headers=alice)
    dataset = response.json()
    data = download(client, alice, dataset["id"], 1)
    path = tmp_path / "digits.npz"
    path.write_bytes(data)
    loaded, original = load_dataset(path), load_dataset("digits")
    assert loaded.sample_ids == original.sample_ids
    assert np.array_equal(loaded.x, original.x) and np.array_equal(loaded.y, original.y)


def test_downloads_are_the_owners_only_and_checked(client, alice, bob):
    dataset = upload(client, alice, "rows", "rows.csv", b"f1,label\n1,a\n2,b\n")
    url = f"/datasets/{dataset['id']}/versions/1/download"
    assert client.get(url, headers=bob).status_code == 404
    assert client.get(f"/datasets/{dataset['id']}/versions/9/download", headers=alice).status_code == 404
    assert client.get(url, params={"format": "xml"}, headers=alice).status_code == 422


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_hugging_face_parquet_downloads_as_one_with_the_corrected_labels(client, alice, tmp_path):
    from core.loaders.hf_parquet import write_hf_parquet

    digits = load_dataset("digits", limit=30)
    path = tmp_path / "hf.parquet"
    write_hf_parquet(digits, path)
    dataset = upload(client, alice, "hf", "hf.parquet", path.read_bytes())
    assert dataset["versions"][0]["format"] == "hf-parquet"
    first = digits.sample_ids[0]
    new_label = digits.class_names[(int(digits.y[0]) + 1) % digits.num_classes]
    decide_relabels(client, alice, dataset, {first: new_label})
    relabeled = client.post(f"/datasets/{dataset['id']}/versions/relabel", headers=alice).json()

    labels = reloaded(tmp_path, "corrected.parquet", download(client, alice, dataset["id"], relabeled["version"]))
    expected = {sample_id: digits.class_names[label] for sample_id, label in zip(digits.sample_ids, digits.y)}
    assert labels == {**expected, first: new_label}
