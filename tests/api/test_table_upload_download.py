"""A table upload (CSV, TSV, Parquet) downloads with each sample's feature values as uploaded, read
back from its file a chunk of rows at a time. The downloaded bytes are compared with the text
expected from the uploaded values themselves: for the upload, a relabel with removals, an append
of rows from a second file (their values as stored: float32) and a version whose samples are not
in the file's order."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update

from core.loaders import tabular
from core.store import DatasetVersion, Sample, session_scope

FEATURES = ("f1", "f2", "f3")
COUNT = 11
REMOVED = (1, 6)  # sample indexes a reviewer removes
RELABELED = 4  # and the one they relabel, to "b"
SEPARATORS = {"csv": ",", "tsv": "\t", "parquet": ","}  # a Parquet upload downloads as a CSV


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(tabular, "VALUE_CHUNK_CELLS", 2 * len(FEATURES))  # 2 rows of the file a chunk


def uploaded_rows(prefix: str, count: int, start: int = 0) -> list[dict[str, str]]:
    """Rows as text, each value written as a float parser would not write it back."""
    return [
        {"f1": f"{i}.50", "sample_id": f"{prefix}{i}", "f2": f"{i}e-3", "label": "ab"[i % 2], "f3": f"0{i}"}
        for i in range(start, start + count)
    ]


def file_bytes(file_format: str, rows: list[dict[str, str]]) -> bytes:
    """The rows as an uploaded file: the columns in the rows' order (label and sample_id among the features)."""
    if file_format == "parquet":
        frame = pd.DataFrame(
            {
                "f1": [float(row["f1"]) for row in rows],
                "sample_id": [row["sample_id"] for row in rows],
                "f2": np.array([float(row["f2"]) for row in rows], dtype=np.float32),
                "label": [row["label"] for row in rows],
                "f3": [int(row["f3"]) for row in rows],
            }
        )
        buffer = io.BytesIO()
        frame.to_parquet(buffer)
        return buffer.getvalue()
    sep = SEPARATORS[file_format]
    lines = [sep.join(rows[0])] + [sep.join(row.values()) for row in rows]
    return ("\n".join(lines) + "\n").encode()


def as_uploaded(file_format: str, row: dict[str, str]) -> list[str]:
    """The feature values a download writes for an uploaded row: the text itself for CSV and TSV;
    for Parquet what Python writes for the values pandas reads (float64, float32, int64)."""
    if file_format == "parquet":
        return [repr(float(row["f1"])), repr(float(np.float32(row["f2"]))), str(int(row["f3"]))]
    return [row[name] for name in FEATURES]


def as_stored(row: dict[str, str]) -> list[str]:
    """The feature values a download writes for an appended row: its float32 samples."""
    return [repr(float(np.float32(row[name]))) for name in FEATURES]


def expected_text(sep: str, rows: list[tuple[str, str, list[str]]]) -> bytes:
    header = sep.join(["sample_id", "label", *FEATURES])
    lines = [header] + [sep.join([sample_id, label, *values]) for sample_id, label, values in rows]
    return ("\n".join(lines) + "\n").encode()


def upload(client, headers, filename: str, data: bytes) -> dict:
    response = client.post("/datasets", files={"file": (filename, data)}, data={"name": "rows"}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def download(client, headers, dataset_id: int, version: int) -> bytes:
    response = client.get(f"/datasets/{dataset_id}/versions/{version}/download", headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def relabel_and_remove(client, headers, dataset_id: int) -> int:
    """The version a reviewer makes removing REMOVED and relabelling RELABELED to "b"."""
    job = client.post("/jobs", json={"dataset_id": dataset_id, "epochs": 1}, headers=headers).json()
    decisions = [{"sample_index": i, "verdict": "remove"} for i in REMOVED]
    decisions.append({"sample_index": RELABELED, "verdict": "relabel", "label": "b"})
    for body in decisions:
        response = client.post(f"/jobs/{job['id']}/decisions", json=body, headers=headers)
        assert response.status_code == 201, response.text
    relabeled = client.post(f"/datasets/{dataset_id}/versions/relabel", headers=headers)
    assert relabeled.status_code == 201, relabeled.text
    return relabeled.json()["version"]


def trimmed_rows(file_format: str, rows: list[dict[str, str]]) -> list[tuple[str, str, list[str]]]:
    return [
        (row["sample_id"], "b" if i == RELABELED else row["label"], as_uploaded(file_format, row))
        for i, row in enumerate(rows)
        if i not in REMOVED
    ]


@pytest.mark.parametrize("file_format", ["csv", "tsv", "parquet"])
def test_an_uploaded_table_downloads_with_its_values_as_uploaded(client, alice, file_format):
    rows = uploaded_rows("r", COUNT)
    dataset = upload(client, alice, f"rows.{file_format}", file_bytes(file_format, rows))

    expected = [(row["sample_id"], row["label"], as_uploaded(file_format, row)) for row in rows]
    assert download(client, alice, dataset["id"], 1) == expected_text(SEPARATORS[file_format], expected)


@pytest.mark.parametrize("file_format", ["csv", "tsv", "parquet"])
def test_a_relabel_with_removals_downloads_the_kept_rows_as_uploaded(client, alice, file_format):
    rows = uploaded_rows("r", COUNT)
    dataset = upload(client, alice, f"rows.{file_format}", file_bytes(file_format, rows))
    version = relabel_and_remove(client, alice, dataset["id"])

    assert download(client, alice, dataset["id"], version) == expected_text(
        SEPARATORS[file_format], trimmed_rows(file_format, rows)
    )


@pytest.mark.parametrize("file_format", ["csv", "tsv", "parquet"])
def test_rows_appended_from_a_second_file_download_as_stored_after_the_uploaded_ones(client, alice, file_format):
    rows, more = uploaded_rows("r", COUNT), uploaded_rows("m", 5, start=COUNT)
    dataset = upload(client, alice, f"rows.{file_format}", file_bytes(file_format, rows))
    version = relabel_and_remove(client, alice, dataset["id"])
    appended = client.post(
        f"/datasets/{dataset['id']}/versions/append",
        files={"file": (f"more.{file_format}", file_bytes(file_format, more))}, headers=alice,
    )  # fmt: skip
    assert appended.status_code == 201, appended.text

    expected = trimmed_rows(file_format, rows) + [(row["sample_id"], row["label"], as_stored(row)) for row in more]
    assert appended.json()["version"] == version + 1
    assert download(client, alice, dataset["id"], version + 1) == expected_text(SEPARATORS[file_format], expected)


@pytest.mark.parametrize("file_format", ["csv", "parquet"])
def test_a_version_out_of_the_files_order_downloads_its_rows_in_its_own_order(client, alice, sessions, file_format):
    rows = uploaded_rows("r", COUNT)
    dataset = upload(client, alice, f"rows.{file_format}", file_bytes(file_format, rows))
    version = relabel_and_remove(client, alice, dataset["id"])
    with session_scope(sessions) as session:  # its samples reversed (in two steps: the index is a key)
        version_id = session.query(DatasetVersion.id).filter_by(dataset_id=dataset["id"], version=version).scalar()
        count = session.query(Sample).filter_by(dataset_version_id=version_id).count()
        for new_index in (-1 - Sample.sample_index, count + Sample.sample_index):
            session.execute(
                update(Sample).where(Sample.dataset_version_id == version_id).values(sample_index=new_index)
            )

    expected = trimmed_rows(file_format, rows)[::-1]
    assert download(client, alice, dataset["id"], version) == expected_text(SEPARATORS[file_format], expected)
