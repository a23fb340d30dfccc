"""/datasets: uploads of every format, built-ins, versions, bad input, known flags."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from api.app import create_app
from core.store import Sample


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (6, 6), value).save(buffer, format="PNG")
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def table(rows: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "f1": rng.random(rows),
            "f2": rng.random(rows),
            "label": ["cat", "dog"] * (rows // 2),
            "sample_id": [f"row-{i}" for i in range(rows)],
            "is_mislabeled": [i == 3 for i in range(rows)],
        }
    )


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


UPLOADS = {
    "imagefolder.zip": (
        zip_bytes({f"{c}/img{i}.png": png(40 * i) for c in ("cat", "dog") for i in range(3)}),
        6,
        "image",
    ),
    "labelled.zip": (
        zip_bytes(
            {
                **{f"img{i}.png": png(20 * i) for i in range(4)},
                "labels.csv": b"file,label,is_mislabeled\nimg0.png,a,0\nimg1.png,b,1\nimg2.png,a,0\nimg3.png,b,0\n",
            }
        ),
        4,
        "image",
    ),
    "arrays.npz": (npz_bytes(x=np.random.default_rng(0).random((10, 3)), y=np.arange(10) % 2), 10, "tabular"),
    "rows.csv": (table().to_csv(index=False).encode(), 12, "tabular"),
    "rows.parquet": (parquet_bytes(table()), 12, "tabular"),
    "series.ts.csv": (table().to_csv(index=False).encode(), 12, "timeseries"),
}


def upload(client: TestClient, headers, filename: str, data: bytes, **fields):
    return client.post("/datasets", files={"file": (filename, data)}, data=fields, headers=headers)


@pytest.mark.parametrize("filename", list(UPLOADS))
def test_upload_each_format(client, alice, dataset_rows, blob_files, filename):
    data, num_samples, modality = UPLOADS[filename]
    response = upload(client, alice, filename, data, name="mine")
    assert response.status_code == 201, response.text
    dataset = response.json()
    (version,) = dataset["versions"]
    assert dataset["name"] == "mine"
    assert (version["version"], version["num_samples"], version["modality"]) == (1, num_samples, modality)
    sha256 = hashlib.sha256(data).hexdigest()
    suffix = filename[filename.index(".") :]
    assert version["blob_sha256"] == sha256
    assert blob_files() == [f"{sha256}{suffix}"]
    assert dataset_rows() == (1, 1, num_samples)


def test_samples_keep_ids_labels_and_flags(client, alice, sessions):
    dataset = upload(client, alice, "rows.csv", UPLOADS["rows.csv"][0]).json()
    assert dataset["name"] == "rows"
    assert dataset["versions"][0]["class_names"] == ["cat", "dog"]
    with sessions() as session:
        samples = session.scalars(select(Sample).order_by(Sample.sample_index)).all()
    assert [s.sample_id for s in samples[:3]] == ["row-0", "row-1", "row-2"]
    assert [s.label for s in samples[:3]] == [0, 1, 0]
    assert [s.is_mislabeled for s in samples[:5]] == [False, False, False, True, False]


def test_same_name_adds_a_version_and_same_bytes_share_a_blob(client, alice, blob_files):
    data = UPLOADS["rows.csv"][0]
    first = upload(client, alice, "rows.csv", data, name="weekly").json()
    second = upload(client, alice, "rows.csv", data, name="weekly").json()
    assert second["id"] == first["id"]
    assert [v["version"] for v in second["versions"]] == [1, 2]
    assert len(blob_files()) == 1


def test_builtin_digits(client, alice, dataset_rows):
    response = client.post("/datasets", json={"builtin": "digits"}, headers=alice)
    assert response.status_code == 201, response.text
    (version,) = response.json()["versions"]
    assert response.json()["name"] == "digits"
    assert (version["format"], version["num_samples"], version["num_classes"]) == ("builtin", 1797, 10)
    assert dataset_rows() == (1, 1, 1797)


def test_list_and_get_datasets(client, alice):
    created = client.post("/datasets", json={"builtin": "digits", "name": "d"}, headers=alice).json()
    upload(client, alice, "rows.csv", UPLOADS["rows.csv"][0])
    listed = client.get("/datasets", headers=alice).json()
    assert [d["name"] for d in listed] == ["d", "rows"]
    assert client.get(f"/datasets/{created['id']}", headers=alice).json() == created
    assert client.get("/datasets/999", headers=alice).status_code == 404


def evil_zip() -> bytes:
    return zip_bytes({"cat/a.png": png(1), "dog/b.png": png(2), "../escape/c.png": png(3)})


BAD_UPLOADS = {
    "wrong file type": ("notes.txt", b"cat,dog\n", 415, "not a supported dataset file"),
    "corrupt zip": ("broken.zip", b"PK\x03\x04 this is not really a zip", 422, "not a readable zip"),
    "path traversal": ("evil.zip", evil_zip(), 422, "unsafe path"),
    "labels missing": ("nolabel.csv", b"f1,f2\n1,2\n3,4\n", 422, "label"),
    "npz without y": ("x.npz", npz_bytes(x=np.zeros((4, 2))), 422, "y"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_upload_stores_nothing(client, alice, dataset_rows, blob_files, case):
    filename, data, status, message = BAD_UPLOADS[case]
    response = upload(client, alice, filename, data)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]
    assert dataset_rows() == (0, 0, 0)
    assert blob_files() == []


NAMED_FAILURES = {
    **{case: (filename, data, {}) for case, (filename, data, status, _) in BAD_UPLOADS.items() if status == 422},
    "corrupt parquet": ("broken.parquet", b"PAR1 not really parquet", {}),
    "wrong modality": ("rows.csv", b"f1,label\n1,a\n2,b\n3,a\n4,b\n", {"modality": "image"}),
}


@pytest.mark.parametrize("case", list(NAMED_FAILURES))
def test_a_bad_upload_names_the_uploaded_file_not_the_stored_blob(client, alice, settings, case):
    filename, data, fields = NAMED_FAILURES[case]
    response = upload(client, alice, filename, data, **fields)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert filename in detail
    sha256 = hashlib.sha256(data).hexdigest()
    for internal in (sha256, str(settings.data_dir), str(settings.blob_dir), "blobs/"):
        assert internal not in detail


def test_failed_upload_keeps_a_blob_another_version_uses(client, alice, blob_files):
    data = UPLOADS["rows.csv"][0]
    upload(client, alice, "rows.csv", data)
    response = upload(client, alice, "rows.csv", data, modality="image")
    assert response.status_code == 422
    assert len(blob_files()) == 1


def test_bad_form_fields(client, alice, dataset_rows, blob_files):
    assert upload(client, alice, "rows.csv", UPLOADS["rows.csv"][0], modality="audio").status_code == 422
    assert upload(client, alice, "rows.csv", UPLOADS["rows.csv"][0], colour="red").status_code == 422
    no_file = client.post("/datasets", data={"name": "x"}, files={"other": ("", b"")}, headers=alice)
    assert no_file.status_code == 422
    wrong_type = client.post("/datasets", content=b"x,y", headers={**alice, "Content-Type": "text/csv"})
    assert wrong_type.status_code == 415
    unknown_builtin = client.post("/datasets", json={"builtin": "mnist"}, headers=alice)
    assert unknown_builtin.status_code == 422 and "built-in" in unknown_builtin.json()["detail"]
    assert dataset_rows() == (0, 0, 0)
    assert blob_files() == []


@pytest.fixture
def small_limit_client(settings):
    with TestClient(create_app(settings.model_copy(update={"max_upload_bytes": 2000}))) as client:
        yield client


def test_oversized_upload_is_413(small_limit_client, make_key, dataset_rows, blob_files):
    alice = make_key("alice")
    data = UPLOADS["rows.parquet"][0]
    assert len(data) > 2000
    response = upload(small_limit_client, alice, "rows.parquet", data)
    assert response.status_code == 413
    assert dataset_rows() == (0, 0, 0)
    assert blob_files() == []


def test_oversized_stream_without_length_is_413(small_limit_client, make_key, dataset_rows, blob_files):
    alice = make_key("alice")
    boundary = "lilaw-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()

    def body():
        yield head + b"f1,label\n"
        for _ in range(100):
            yield b"1.0,a\n" * 20
        yield f"\r\n--{boundary}--\r\n".encode()

    response = small_limit_client.post(
        "/datasets", content=body(), headers={**alice, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 413
    assert dataset_rows() == (0, 0, 0)
    assert blob_files() == []


def test_upload_flags_csv_and_json(client, alice, sessions):
    dataset_id = upload(client, alice, "rows.csv", UPLOADS["rows.csv"][0]).json()["id"]
    url = f"/datasets/{dataset_id}/versions/1/flags"
    csv_flags = b"sample_id,is_mislabeled\nrow-0,true\nrow-1,0\nrow-3,\n"
    response = client.post(url, content=csv_flags, headers={**alice, "Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "dataset_id": dataset_id,
        "version": 1,
        "updated": 3,
        "num_known": 11,
        "num_mislabeled": 1,
    }
    response = client.post(url, json=[{"sample_id": "row-5", "is_mislabeled": True}], headers=alice)
    assert response.json()["num_mislabeled"] == 2
    with sessions() as session:
        flags = dict(session.execute(select(Sample.sample_id, Sample.is_mislabeled)).all())
    assert (flags["row-0"], flags["row-1"], flags["row-3"], flags["row-5"]) == (True, False, None, True)


def test_bad_flags_change_nothing(client, alice, sessions):
    dataset_id = upload(client, alice, "rows.csv", UPLOADS["rows.csv"][0]).json()["id"]
    url = f"/datasets/{dataset_id}/versions/1/flags"
    row_0 = {"sample_id": "row-0", "is_mislabeled": True}
    as_csv = {**alice, "Content-Type": "text/csv"}
    cases = [
        client.post(url, json=[row_0, {"sample_id": "nope", "is_mislabeled": True}], headers=alice),
        client.post(url, content=b"sample_id,is_mislabeled\nrow-0,maybe\n", headers=as_csv),
        client.post(url, content=b"sample_id\nrow-0\n", headers=as_csv),
        client.post(url, json=[row_0, row_0], headers=alice),
        client.post(url, content=b"row-0", headers={**alice, "Content-Type": "text/plain"}),
        client.post(f"/datasets/{dataset_id}/versions/2/flags", json=[row_0], headers=alice),
    ]
    assert [response.status_code for response in cases] == [422, 422, 422, 422, 415, 404]
    assert "'nope'" in cases[0].json()["detail"]
    with sessions() as session:
        assert session.scalar(select(Sample.is_mislabeled).where(Sample.sample_id == "row-0")) is False
