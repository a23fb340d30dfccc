"""No uploaded file is left behind: every request that refuses or abandons an upload (a missing,
foreign or malformed dataset id, an unreadable file, a 500, a client gone mid-upload) leaves the
blob dir as it found it, and the sweep removes what a killed process left."""

from __future__ import annotations

import os
import socket
import threading
import time
from datetime import timedelta

import pytest
import uvicorn
from fastapi.testclient import TestClient

from core.services import datasets as dataset_service
from core.services.blobs import BlobStore
from core.store import session_scope

ROWS = b"f1,f2,label\n1,2,a\n2,3,b\n3,4,a\n4,5,b\n"
MORE_ROWS = b"f1,f2,label\n7,8,a\n9,9,b\n"
sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


def upload(name: str, data: bytes) -> dict:
    return {"file": (name, data)}


@pytest.fixture
def dataset_id(client, alice) -> int:
    return client.post("/datasets", files=upload("rows.csv", ROWS), headers=alice).json()["id"]


def test_refused_appends_leave_no_file(client, alice, bob, dataset_id, blob_files):
    before = blob_files()
    assert len(before) == 1
    attempts = {
        "missing dataset": client.post("/datasets/999/versions/append", files=upload("m.csv", MORE_ROWS), headers=alice),
        "foreign dataset": client.post(
            f"/datasets/{dataset_id}/versions/append", files=upload("m.csv", MORE_ROWS), headers=bob
        ),
        "malformed id": client.post("/datasets/abc/versions/append", files=upload("m.csv", MORE_ROWS), headers=alice),
        "id out of range": client.post(
            "/datasets/99999999999999999999/versions/append", files=upload("m.csv", MORE_ROWS), headers=alice
        ),
        "unreadable file": client.post(
            f"/datasets/{dataset_id}/versions/append", files=upload("m.csv", b"\x00\xff garbage"), headers=alice
        ),
        "wrong kind of data": client.post(
            f"/datasets/{dataset_id}/versions/append", files=upload("m.csv", b"x,label\n1,a\n"), headers=alice
        ),
    }
    codes = {what: response.status_code for what, response in attempts.items()}
    assert codes == {
        "missing dataset": 404, "foreign dataset": 404, "malformed id": 422, "id out of range": 422,
        "unreadable file": 422, "wrong kind of data": 422,
    }  # fmt: skip
    assert blob_files() == before


def test_an_accepted_append_keeps_only_the_versions_files(client, alice, dataset_id, blob_files, sessions):
    response = client.post(f"/datasets/{dataset_id}/versions/append", files=upload("m.csv", MORE_ROWS), headers=alice)
    assert response.status_code == 201
    versions = client.get(f"/datasets/{dataset_id}", headers=alice).json()["versions"]
    assert len(versions) == 2
    # One file per version: the uploaded CSV itself, which no version refers to, is gone.
    assert len(blob_files()) == 2


@sqlite_only
def test_a_500_leaves_no_file(app, alice, blob_files, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(dataset_service, "add_version", broken)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post("/datasets", files=upload("rows.csv", ROWS), headers=alice)
    assert response.status_code == 500
    assert blob_files() == []


@sqlite_only
def test_a_client_gone_mid_upload_leaves_no_partial_file(app, alice, settings, blob_files):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        boundary = "cut"
        head = (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        declared = 50 * 1024**2
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(
                f"POST /datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {alice['Authorization']}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {declared}\r\n\r\n".encode()
                + head
                + b"f1,label\n" + b"1,a\n" * 250_000
            )
            deadline = time.monotonic() + 10
            while not any(name.startswith("incoming/") for name in blob_files()) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert any(name.startswith("incoming/") for name in blob_files())  # it was streaming in
        deadline = time.monotonic() + 10
        while blob_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert blob_files() == []
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_sweep_removes_old_orphans_and_partial_uploads_only(client, alice, dataset_id, settings, sessions, blob_files):
    store = BlobStore(settings)
    (kept,) = blob_files()
    old = time.time() - 2 * 3600
    orphan = store.root / f"{'a' * 64}.csv"
    young_orphan = store.root / f"{'b' * 64}.npz"
    partial = store.incoming_dir / "upload-killed"
    store.incoming_dir.mkdir(exist_ok=True)
    for path in (orphan, young_orphan, partial):
        path.write_bytes(b"left behind")
    for path in (orphan, partial, store.root / kept):
        os.utime(path, (old, old))

    with session_scope(sessions) as session:
        report = store.sweep_orphans(session, grace=timedelta(hours=1))
    assert report.blobs == [orphan.name] and report.partial_uploads == [partial.name]
    assert blob_files() == sorted([kept, young_orphan.name])
    assert client.get(f"/datasets/{dataset_id}", headers=alice).status_code == 200


@sqlite_only
def test_the_sweep_command_and_task(client, alice, dataset_id, settings, blob_files, capsys):
    from cli.main import main as cli_main
    from worker import tasks

    store = BlobStore(settings)
    orphan = store.root / f"{'c' * 64}.zip"
    orphan.write_bytes(b"orphan")
    assert cli_main(["sweep-blobs", "--grace-minutes", "0"]) == 0
    assert "removed 1 orphan blobs" in capsys.readouterr().out
    assert not orphan.exists() and len(blob_files()) == 1

    orphan.write_bytes(b"orphan")
    old = time.time() - 2 * 3600
    os.utime(orphan, (old, old))
    tasks.job_sessions.cache_clear()
    try:
        assert tasks.sweep_orphan_blobs() == {"blobs": 1, "partial_uploads": 0}
    finally:
        tasks.job_sessions.cache_clear()
    assert len(blob_files()) == 1
