"""Migrations 0010 (ingest status) and 0011 (sample segments), on both backends: what was stored
before each reads as it did (datasets and versions ready; no segments, so a version's samples stay
where `samples_uri` or the blob says), and each goes down and up again."""

import pytest
from sqlalchemy import inspect, text

from core.store import make_engine
from migrations import downgrade_database, upgrade_database


def _columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _execute(url: str, *statements: str) -> list:
    """Run the statements in one transaction; the rows of the last."""
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            for statement in statements:
                result = connection.execute(text(statement), {"sha": "0" * 64})
            return result.all() if result.returns_rows else []
    finally:
        engine.dispose()


def _store_version(url: str, columns: str = "", values: str = "") -> None:
    _execute(
        url,
        "INSERT INTO owners (id, name) VALUES (1, 'alice')",
        "INSERT INTO datasets (id, owner_id, name) VALUES (1, 1, 'pets')",
        "INSERT INTO dataset_versions (id, dataset_id, version, blob_sha256, blob_uri, format, modality, num_samples,"
        f" num_classes, class_names{columns}) VALUES (1, 1, 1, :sha, 'blobs/x.csv', 'csv', 'tabular', 2, 2,"
        f" '[\"a\", \"b\"]'{values})",
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_existing_datasets_are_ready_after_0010_and_it_goes_down_and_up(make_database, backend):
    url = make_database(backend)
    upgrade_database(url, "0009")
    _store_version(url)

    upgrade_database(url, "0010")
    assert _execute(url, "SELECT status, ingest_percent, ingest_error FROM datasets") == [("ready", 100, None)]
    assert _execute(url, "SELECT status FROM dataset_versions") == [("ready",)]

    downgrade_database(url, "0009")
    assert not {"status", "ingest_percent", "ingest_error"} & _columns(url, "datasets")
    assert not {"status", "samples_uri"} & _columns(url, "dataset_versions")
    upgrade_database(url)
    assert {"status", "ingest_percent", "ingest_error"} <= _columns(url, "datasets")
    assert {"status", "samples_uri"} <= _columns(url, "dataset_versions")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_versions_before_0011_have_no_segments_and_it_goes_down_and_up(make_database, backend):
    url = make_database(backend)
    upgrade_database(url, "0010")
    _store_version(url, ", samples_uri", ", 'samples/x.npy'")

    upgrade_database(url, "0011")
    assert _execute(url, "SELECT samples_uri, sample_segments FROM dataset_versions") == [("samples/x.npy", None)]

    downgrade_database(url, "0010")
    assert "sample_segments" not in _columns(url, "dataset_versions")
    upgrade_database(url)
    assert "sample_segments" in _columns(url, "dataset_versions")
