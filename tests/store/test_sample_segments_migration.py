"""Migration 0011 (sample segments): versions stored before it have no segments (their samples
stay where `samples_uri` or the blob says), and it goes down and up again on both backends."""

import pytest
from sqlalchemy import inspect, text

from core.store import make_engine
from migrations import downgrade_database, upgrade_database


def _columns(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns("dataset_versions")}
    finally:
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_versions_before_0011_have_no_segments_and_it_goes_down_and_up(make_database, backend):
    url = make_database(backend)
    upgrade_database(url, "0010")
    engine = make_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO owners (id, name) VALUES (1, 'alice')"))
            connection.execute(text("INSERT INTO datasets (id, owner_id, name) VALUES (1, 1, 'pets')"))
            connection.execute(
                text(
                    "INSERT INTO dataset_versions (id, dataset_id, version, blob_sha256, blob_uri, format, modality,"
                    " num_samples, num_classes, class_names, samples_uri) VALUES (1, 1, 1, :sha, 'blobs/x.csv', 'csv',"
                    " 'tabular', 2, 2, '[\"a\", \"b\"]', 'samples/x.npy')"
                ),
                {"sha": "0" * 64},
            )
    finally:
        engine.dispose()

    upgrade_database(url, "0011")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            row = connection.execute(text("SELECT samples_uri, sample_segments FROM dataset_versions")).one()
    finally:
        engine.dispose()
    assert tuple(row) == ("samples/x.npy", None)

    downgrade_database(url, "0010")
    assert "sample_segments" not in _columns(url)
    upgrade_database(url)
    assert "sample_segments" in _columns(url)
