"""The review pages' access: a login form that opens a server-side session kept in an HTTP-only,
SameSite=Strict cookie, pages only for the key's owner, and cookie-authenticated changes only from
the pages' own scripts. (The pages themselves are driven in a browser by tests/web; sessions,
CSRF and keys by tests/api/test_sessions_and_keys.py.)"""

from __future__ import annotations

import re

import pytest

sqlite_only = pytest.mark.parametrize("settings", ["sqlite"], indirect=True)


def key_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def login_csrf(client) -> str:
    """The CSRF token of a freshly loaded login form (its cookie stays in the client)."""
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/login").text).group(1)


def log_in(client, headers, next_page: str = "/ui/jobs", api_key: str | None = None):
    data = {"api_key": api_key or key_of(headers), "next": next_page, "csrf_token": login_csrf(client)}
    return client.post("/ui/login", data=data, follow_redirects=False)


def logout_csrf(page_html: str) -> str:
    return re.search(r'action="/ui/logout"><input type="hidden" name="csrf_token" value="([^"]*)"', page_html).group(1)


@sqlite_only
def test_pages_ask_for_a_login_first(client, finished_job):
    for path in ("/ui/jobs", f"/ui/jobs/{finished_job.job_id}", f"/ui/jobs/{finished_job.job_id}/review"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == f"/ui/login?next={path}"
    form = client.get("/ui/login")
    assert form.status_code == 200 and 'name="api_key"' in form.text
    assert "script-src 'self'" in form.headers["content-security-policy"]


@sqlite_only
def test_login_keeps_the_key_in_a_strict_http_only_cookie(client, alice, finished_job):
    wrong = log_in(client, None, api_key="lilaw_wrong")
    assert wrong.status_code == 401 and "not valid" in wrong.text

    page = f"/ui/jobs/{finished_job.job_id}/review"
    response = log_in(client, alice, page)
    assert response.status_code == 303 and response.headers["location"] == page
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert key_of(alice) not in cookie

    review = client.get(page)
    assert review.status_code == 200 and "Review job" in review.text
    job = client.get(f"/ui/jobs/{finished_job.job_id}")
    assert job.status_code == 200 and "Review suspects" in job.text
    assert "Job 1" in client.get("/ui/jobs").text
    assert client.get(f"/jobs/{finished_job.job_id}/review-queue").status_code == 200

    csrf = logout_csrf(client.get("/ui/jobs").text)
    assert client.post("/ui/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    assert client.get(page, follow_redirects=False).status_code == 303


@sqlite_only
def test_cookie_authenticated_changes_need_the_pages_header(client, alice, finished_job):
    log_in(client, alice)
    body = {"sample_index": 0, "verdict": "keep"}
    refused = client.post(f"/jobs/{finished_job.job_id}/decisions", json=body)
    assert refused.status_code == 401 and "X-Requested-With" in refused.json()["detail"]
    accepted = client.post(
        f"/jobs/{finished_job.job_id}/decisions", json=body, headers={"X-Requested-With": "lilaw-review"}
    )
    assert accepted.status_code == 201 and accepted.json()["reviewer"] == "alice"


@sqlite_only
def test_pages_of_another_owners_job_are_not_found(client, bob, finished_job):
    log_in(client, bob)
    assert client.get(f"/ui/jobs/{finished_job.job_id}").status_code == 404
    assert client.get(f"/ui/jobs/{finished_job.job_id}/review").status_code == 404
    assert "Job 1" not in client.get("/ui/jobs").text


@sqlite_only
def test_login_redirects_only_to_the_sites_pages(client, alice):
    for target in ("https://evil.example/", "//evil.example/ui/", "/jobs/1/export.csv"):
        assert log_in(client, alice, target).headers["location"] == "/ui/jobs"


@sqlite_only
def test_a_reaudits_page_shows_what_changed_since_the_audit_before_it(client, alice, finished_job, finish_job):
    reaudit = client.post(f"/datasets/{finished_job.dataset_id}/reaudits", json={"force": True}, headers=alice)
    second = reaudit.json()["job"]["id"]
    finish_job(second)
    log_in(client, alice)

    page = client.get(f"/ui/jobs/{second}")
    assert page.status_code == 200 and f'Since job <a href="/ui/jobs/{finished_job.job_id}">' in page.text
    suspected = int((finished_job.audit.result.scores["aum"] > 0).sum())
    assert f"{suspected} of {finished_job.num_samples} samples suspected" in page.text
    assert "Since job" not in client.get(f"/ui/jobs/{finished_job.job_id}").text  # a first audit
