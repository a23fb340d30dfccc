"""Migration 0010 (ingest status): datasets and versions stored before it read as ready, and it
goes down and up again on both backends."""

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


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_existing_datasets_are_ready_after_0010_and_it_goes_down_and_up(make_database, backend):
    url = make_database(backend)
    upgrade_database(url, "0009")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO owners (id, name) VALUES (1, 'alice')"))
            connection.execute(text("INSERT INTO datasets (id, owner_id, name) VALUES (1, 1, 'pets')"))
            connection.execute(
                text(
                    "INSERT INTO dataset_versions (id, dataset_id, version, blob_sha256, blob_uri, format, modality,"
                    " num_samples, num_classes, class_names) VALUES (1, 1, 1, :sha, 'blobs/x.csv', 'csv', 'tabular',"
                    " 2, 2, '[\"a\", \"b\"]')"
                ),
                {"sha": "0" * 64},
            )
    finally:
        engine.dispose()

    upgrade_database(url, "0010")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            dataset = connection.execute(text("SELECT status, ingest_percent, ingest_error FROM datasets")).one()
            version_status = connection.scalar(text("SELECT status FROM dataset_versions"))
    finally:
        engine.dispose()
    assert tuple(dataset) == ("ready", 100, None)
    assert version_status == "ready"

    downgrade_database(url, "0009")
    assert not {"status", "ingest_percent", "ingest_error"} & _columns(url, "datasets")
    assert not {"status", "samples_uri"} & _columns(url, "dataset_versions")
    upgrade_database(url)
    assert {"status", "ingest_percent", "ingest_error"} <= _columns(url, "datasets")
