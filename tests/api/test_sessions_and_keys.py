"""Sessions and keys: the /ui cookie holds a server-side session token (never the key) that
logout and key revocation end; login and logout refuse cross-origin and token-less form posts;
owners list, create, expire and revoke their keys (API and CLI); reviewer keys only review."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from api.auth import hash_key
from cli.main import main as cli_main
from core.store import session_scope
from core.store.models import ApiKey, UiSession, utcnow
from tests.api.test_review_pages import key_of, log_in, login_csrf, logout_csrf

sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
REVIEW_HEADER = {"X-Requested-With": "lilaw-review"}


def session_rows(sessions) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(UiSession))


def test_the_cookie_is_a_hashed_server_side_session_that_logout_ends(client, alice, sessions):
    assert log_in(client, alice).status_code == 303
    token = client.cookies["lilaw_session"]
    assert token != key_of(alice) and key_of(alice) not in token
    with sessions() as session:
        stored = session.scalars(select(UiSession)).one()
    assert stored.token_hash == hash_key(token) and stored.expires_at > utcnow() + timedelta(hours=11)
    assert client.get("/datasets").status_code == 200

    page = client.get("/ui/jobs").text
    assert client.post("/ui/logout", data={"csrf_token": logout_csrf(page)}, follow_redirects=False).status_code == 303
    assert session_rows(sessions) == 0
    # The old token, replayed, authenticates nothing.
    client.cookies.set("lilaw_session", token)
    assert client.get("/datasets").status_code == 401
    assert client.get("/ui/jobs", follow_redirects=False).headers["location"].startswith("/ui/login")


@sqlite_only
def test_an_expired_session_authenticates_nothing(client, alice, sessions):
    log_in(client, alice)
    with session_scope(sessions) as session:
        session.scalars(select(UiSession)).one().expires_at = utcnow() - timedelta(seconds=1)
    assert client.get("/datasets").status_code == 401


@sqlite_only
def test_login_and_logout_refuse_cross_origin_and_tokenless_posts(client, alice, sessions):
    key = key_of(alice)
    no_token = client.post("/ui/login", data={"api_key": key}, follow_redirects=False)
    assert no_token.status_code == 403 and "lilaw_session" not in client.cookies
    csrf = login_csrf(client)
    cross = client.post(
        "/ui/login", data={"api_key": key, "csrf_token": csrf}, headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert cross.status_code == 403 and "lilaw_session" not in client.cookies
    wrong_token = client.post("/ui/login", data={"api_key": key, "csrf_token": "forged"}, follow_redirects=False)
    assert wrong_token.status_code == 403 and session_rows(sessions) == 0
    same_site = client.post(
        "/ui/login", data={"api_key": key, "csrf_token": login_csrf(client)},
        headers={"Origin": "http://testserver"}, follow_redirects=False,
    )
    assert same_site.status_code == 303 and session_rows(sessions) == 1

    page = client.get("/ui/jobs").text
    assert client.post("/ui/logout", follow_redirects=False).status_code == 403
    refused = client.post(
        "/ui/logout", data={"csrf_token": logout_csrf(page)}, headers={"Referer": "https://evil.example/x"},
        follow_redirects=False,
    )
    assert refused.status_code == 403 and session_rows(sessions) == 1


def test_owners_list_expire_and_revoke_their_keys(client, alice, bob, sessions):
    created = client.post("/keys", json={"reviewer": "dana"}, headers=alice)
    assert created.status_code == 201
    body = created.json()
    assert body["role"] == "reviewer" and body["active"] and body["key"].startswith(body["prefix"])
    dana = {"Authorization": f"Bearer {body['key']}"}
    assert client.get("/jobs", headers=dana).status_code == 200

    listed = client.get("/keys", headers=alice).json()
    assert [(key["reviewer"], key["role"]) for key in listed] == [(None, "owner"), ("dana", "reviewer")]
    assert all("key" not in key for key in listed)
    assert client.get("/keys", headers=bob).json()[0]["id"] != body["id"]  # bob sees only his own
    assert client.delete(f"/keys/{body['id']}", headers=bob).status_code == 404

    past = (utcnow() - timedelta(minutes=1)).isoformat()
    expired = client.patch(f"/keys/{body['id']}", json={"expires_at": past}, headers=alice)
    assert expired.status_code == 200 and not expired.json()["active"]
    assert client.get("/jobs", headers=dana).status_code == 401
    client.patch(f"/keys/{body['id']}", json={"expires_at": None}, headers=alice)
    assert client.get("/jobs", headers=dana).status_code == 200

    # Revoking ends the key and the page sessions it opened.
    log_in(client, None, api_key=body["key"])
    assert session_rows(sessions) == 1
    assert client.delete(f"/keys/{body['id']}", headers=alice).status_code == 204
    assert client.get("/jobs", headers=dana).status_code == 401
    assert session_rows(sessions) == 0
    assert client.get("/datasets").status_code == 401  # the cookie's session is gone
    assert client.get("/keys", headers=alice).json()[1]["revoked_at"] is not None

    in_the_past = client.post("/keys", json={"expires_at": past}, headers=alice)
    naive = client.post("/keys", json={"expires_at": "2099-01-01T00:00:00"}, headers=alice)
    assert in_the_past.status_code == naive.status_code == 422


def test_reviewer_keys_only_review(client, alice, finished_job):
    reviewer = {"Authorization": f"Bearer {client.post('/keys', json={'reviewer': 'eve'}, headers=alice).json()['key']}"}
    job, dataset = finished_job.job_id, finished_job.dataset_id
    allowed = [
        client.get(f"/jobs/{job}", headers=reviewer),
        client.get(f"/jobs/{job}/suspects", headers=reviewer),
        client.get(f"/jobs/{job}/review-queue", headers=reviewer),
        client.get(f"/jobs/{job}/samples/0/thumbnail.png", headers=reviewer),
        client.get(f"/jobs/{job}/export.csv", headers=reviewer),
        client.post(f"/jobs/{job}/decisions", json={"sample_index": 0, "verdict": "keep"}, headers=reviewer),
    ]
    assert [response.status_code for response in allowed] == [200, 200, 200, 200, 200, 201]
    refused = [
        client.post("/datasets", files={"file": ("rows.csv", b"f1,label\n1,a\n2,b\n")}, headers=reviewer),
        client.post(f"/datasets/{dataset}/versions/append", files={"file": ("r.csv", b"f1,label\n1,a\n")}, headers=reviewer),
        client.post("/jobs", json={"dataset_id": dataset, "epochs": 1}, headers=reviewer),
        client.post(f"/jobs/{job}/cancel", headers=reviewer),
        client.put(f"/datasets/{dataset}/schedule", json={"interval_seconds": 3600}, headers=reviewer),
        client.get(f"/datasets/{dataset}/schedule", headers=reviewer),
        client.get(f"/datasets/{dataset}/webhook", headers=reviewer),
        client.put(f"/datasets/{dataset}/webhook", json={"url": "https://example.org/h"}, headers=reviewer),
        client.get("/keys", headers=reviewer),
        client.post("/keys", json={}, headers=reviewer),
    ]
    assert [response.status_code for response in refused] == [403] * len(refused)
    assert "reviewer key" in refused[0].json()["detail"]
    assert client.get("/jobs", headers=alice).json()[0]["id"] == job and len(client.get("/datasets", headers=alice).json()) == 1


@sqlite_only
def test_the_keys_commands_list_create_and_revoke(client, alice, settings, capsys):
    assert cli_main(["keys", "create", "--owner", "alice", "--reviewer", "finn", "--expires-in-days", "7"]) == 0
    key = capsys.readouterr().out.strip()
    reviewer = {"Authorization": f"Bearer {key}"}
    assert client.get("/jobs", headers=reviewer).status_code == 200
    assert cli_main(["keys", "list", "--owner", "alice"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split() == ["id", "prefix", "reviewer", "role", "expires", "state"]
    finn = next(line.split() for line in listing if "finn" in line)
    assert finn[3] == "reviewer" and finn[5] == "active" and key.startswith(finn[1].removesuffix("..."))
    assert cli_main(["keys", "revoke", "--owner", "alice", finn[0]]) == 0
    assert client.get("/jobs", headers=reviewer).status_code == 401
    assert cli_main(["keys", "revoke", "--owner", "bob", finn[0]]) == 2  # not bob's key
