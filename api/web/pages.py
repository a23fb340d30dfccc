"""The review workspace's HTML pages, server-rendered; their scripts read the JSON API with the
session cookie set by the login form (see `api.deps`).

/ui/login   a form taking an API key; it opens a server-side session (`api.ui_sessions`) whose
            token goes into an HTTP-only, SameSite=Strict cookie; /ui/logout ends it. Both forms
            are CSRF-protected (a form token, and this site's Origin/Referer when one is sent)
/ui/jobs    the caller's jobs
/ui/jobs/N  a job: live progress, alpha/beta/delta over training, score histogram, ROC and PR curves,
            and for a re-audit what changed since the audit before it
/ui/jobs/N/review  the review queue, keyboard first
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from api.auth import KeyHolder, key_holder
from api.deps import SESSION_COOKIE, PageSessionDep, PageViewer, SessionDep, SessionFactoryDep, SettingsDep
from api.schemas.common import DbId
from api.ui_sessions import SESSION_LIFETIME, close_session, open_session, same_origin, tokens_match
from core.store.db import session_scope
from core.services import NotFoundError, jobs, reaudits, results
from core.services.artifacts import job_artifacts
from core.store.models import AuditJob, JobStatus

WEB_DIR = Path(__file__).parent
SESSION_MAX_AGE_S = int(SESSION_LIFETIME.total_seconds())
LOGIN_CSRF_COOKIE = "lilaw_login_csrf"  # the login form's double-submit token
LOGIN_FORM_MAX_AGE_S = 3600
REPORT_LISTED_SAMPLES = 5  # sample ids the job page shows per list of a re-audit's report
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=WEB_DIR / "templates")
static_files = StaticFiles(directory=WEB_DIR / "static")


@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=303)


@router.get("/login")
def login_form(request: Request, next: str = "/ui/jobs") -> HTMLResponse:
    return _login_page(request, next, error=None)


@router.post("/login")
def login(
    request: Request,
    sessions: SessionFactoryDep,
    api_key: Annotated[str, Form(max_length=200)],
    next: Annotated[str, Form(max_length=2000)] = "/ui/jobs",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    if not same_origin(request) or not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE), csrf_token):
        error = "The login form has expired or came from another site: log in again."
        return _login_page(request, next, error=error, status_code=403)
    with session_scope(sessions) as session:
        holder = key_holder(session, api_key.strip())
        token = None if holder is None else open_session(session, holder)[0]
    if token is None:
        return _login_page(request, next, error="This API key is not valid.", status_code=401)
    response = RedirectResponse(_local(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/ui/login", httponly=True, samesite="strict")
    return response


@router.post("/logout")
def logout(
    request: Request,
    sessions: SessionFactoryDep,
    page: PageSessionDep,
    csrf_token: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """End the session (its row is deleted: the cookie authenticates nothing after)."""
    token = request.cookies.get(SESSION_COOKIE)
    if page is not None:
        if not same_origin(request) or not tokens_match(page.csrf_token, csrf_token):
            return Response("log out from the site's own pages", status_code=403, headers=SECURITY_HEADERS)
        with session_scope(sessions) as session:
            close_session(session, token)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _login_page(request: Request, next: str, *, error: str | None, status_code: int = 200) -> HTMLResponse:
    """The login form, with a fresh double-submit CSRF token in the form and in a cookie."""
    login_csrf = secrets.token_urlsafe(32)
    response = _page(
        request, "login.html", None, status_code=status_code, next=_local(next), error=error, login_csrf=login_csrf
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        login_csrf,
        max_age=LOGIN_FORM_MAX_AGE_S,
        path="/ui/login",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/jobs")
def job_list(request: Request, viewer: PageViewer, session: SessionDep) -> Response:
    if viewer is None:
        return _to_login(request)
    found = jobs.list_jobs(session, viewer.owner.id, limit=200)
    return _page(request, "jobs.html", viewer, jobs=found)


@router.get("/jobs/{job_id}")
def job_page(
    job_id: DbId, request: Request, viewer: PageViewer, session: SessionDep, settings: SettingsDep
) -> Response:
    job = _viewed_job(request, viewer, session, job_id)
    if isinstance(job, Response):
        return job
    report = None
    if job.previous_job_id is not None and job.status is JobStatus.SUCCEEDED:
        report = reaudits.reaudit_report(session, job, job_artifacts(settings, job), limit=REPORT_LISTED_SAMPLES)
    return _page(request, "job.html", viewer, job=job, report=report, data={"job_id": job.id})


@router.get("/jobs/{job_id}/review")
def review_page(job_id: DbId, request: Request, viewer: PageViewer, session: SessionDep) -> Response:
    job = _viewed_job(request, viewer, session, job_id)
    if isinstance(job, Response):
        return job
    version = job.dataset_version
    data = {
        "job_id": job.id,
        "class_names": version.class_names,
        "modality": version.modality,
        "reviewer": viewer.reviewer,
        "score": results.default_score(job),
    }
    return _page(request, "review.html", viewer, job=job, data=data)


def _viewed_job(request: Request, viewer: KeyHolder | None, session: Session, job_id: DbId) -> AuditJob | Response:
    """The viewer's job, or the page to answer instead: the login page when no one is logged in,
    the not-found page when the viewer has no such job."""
    if viewer is None:
        return _to_login(request)
    try:
        return jobs.get_job(session, viewer.owner.id, job_id)
    except NotFoundError:
        return _not_found(request, viewer, job_id)


def _page(
    request: Request, template: str, viewer: KeyHolder | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    # The session's CSRF token (set by `api.deps`'s page session) for the logout form.
    csrf_token = getattr(request.state, "csrf_token", None)
    return templates.TemplateResponse(
        request,
        template,
        {"viewer": viewer, "csrf_token": csrf_token, **context},
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )


def _to_login(request: Request) -> RedirectResponse:
    return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)


def _not_found(request: Request, viewer: KeyHolder, job_id: DbId) -> HTMLResponse:
    return _page(request, "not_found.html", viewer, status_code=404, what=f"job {job_id}")


def _local(target: str) -> str:
    """`target` when it is a page of this site, else the job list (no open redirects)."""
    return target if target.startswith("/ui/") else "/ui/jobs"
