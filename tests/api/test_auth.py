"""API keys: required on every resource route, accepted in both headers, scoped to their owner."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from api.auth import hash_key
from core.store import ApiKey


def test_missing_key_is_401(client):
    response = client.get("/datasets")
    assert response.status_code == 401
    assert "missing API key" in response.json()["detail"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer lilaw_wrong"}, {"X-API-Key": "lilaw_wrong"}])
def test_invalid_key_is_401(client, headers):
    response = client.get("/jobs", headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "invalid API key"}


def test_key_in_either_header(client, alice):
    key = alice["Authorization"].removeprefix("Bearer ")
    assert client.get("/datasets", headers=alice).status_code == 200
    assert client.get("/datasets", headers={"X-API-Key": key}).status_code == 200


def test_key_is_stored_hashed_with_a_prefix(client, alice, sessions):
    key = alice["Authorization"].removeprefix("Bearer ")
    with sessions() as session:
        stored = session.scalars(select(ApiKey)).one()
    assert stored.key_hash == hash_key(key) != key
    assert key.startswith(stored.prefix) and len(stored.prefix) < len(key) / 2


def test_other_owners_resources_are_404(client, alice, bob):
    files = {"file": ("rows.csv", b"f1,label\n1,a\n2,b\n3,a\n4,b\n")}
    dataset_id = client.post("/datasets", files=files, headers=alice).json()["id"]
    job_id = client.post("/jobs", json={"dataset_id": dataset_id, "epochs": 1}, headers=alice).json()["id"]
    attempts = [
        client.get(f"/datasets/{dataset_id}", headers=bob),
        client.post(f"/datasets/{dataset_id}/versions/1/flags", json=[], headers=bob),
        client.post("/jobs", json={"dataset_id": dataset_id}, headers=bob),
        client.get(f"/jobs/{job_id}", headers=bob),
        client.post(f"/jobs/{job_id}/cancel", headers=bob),
        client.get(f"/jobs/{job_id}/suspects", headers=bob),
        client.get(f"/jobs/{job_id}/metrics", headers=bob),
        client.get(f"/jobs/{job_id}/scores.csv", headers=bob),
        client.get(f"/jobs/{job_id}/model", headers=bob),
    ]
    assert [response.status_code for response in attempts] == [404] * len(attempts)
    assert client.get("/datasets", headers=bob).json() == []
    assert client.get("/jobs", headers=bob).json() == []
    assert client.get(f"/jobs/{job_id}", headers=alice).json()["status"] == "queued"
