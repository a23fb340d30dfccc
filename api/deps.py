"""Request dependencies: settings, the request's database session (committed once, or rolled
back, before the response is sent), the authenticated owner and reviewer, the blob store, the
audit queue.

An API key comes in the `Authorization: Bearer` or `X-API-Key` header; the review pages send
instead the HTTP-only, SameSite=Strict cookie set by their login form, which holds a server-side
session's token (`api.ui_sessions`), never the key. A request authenticated by the cookie that
changes something must also carry an `X-Requested-With` header, which a page of another origin
cannot send without the CORS permission this API never grants.

A reviewer key (role 'reviewer') may only review: it reads jobs and their results, and changes
only what the routes tagged "review" change (decisions); every other change (uploads, deletes,
job submissions, schedules, webhooks, keys) and the schedule, webhook and key routes answer 403."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.auth import KeyHolder, key_holder
from api.errors import AuthenticationError
from api.queue import AuditQueue
from api.ui_sessions import PageSession, page_session
from core.services import PermissionDeniedError
from core.services.blobs import BlobStore
from core.services.decisions import Reviewer
from core.settings import Settings
from core.store.db import session_scope
from core.store.models import Owner

_bearer = HTTPBearer(auto_error=False, description="an API key from `lilaw-audit create-key`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, in its own header")
SESSION_COOKIE = "lilaw_session"
_session_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="a review-page session, opened by /ui/login"
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
REVIEWER_WRITE_TAGS = frozenset({"review"})  # the routes whose changes a reviewer key may make
OWNER_ONLY_TAGS = frozenset({"keys", "webhooks"})  # routes a reviewer key may not even read
OWNER_ONLY_PATH_SUFFIXES = ("/schedule",)


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _session_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


def _read_session_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.read_sessions


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(_session_factory)]
ReadSessionFactoryDep = Annotated[sessionmaker[Session], Depends(_read_session_factory)]


def _read_session(reads: ReadSessionFactoryDep) -> Iterator[Session]:
    """The request's read transaction (DEFERRED on SQLite): the key lookup's, and for GET and
    HEAD the route's too, so that a read costs one transaction."""
    with session_scope(reads) as session:
        yield session


_ReadSessionDep = Annotated[Session, Depends(_read_session, scope="function")]


def _session(request: Request, sessions: SessionFactoryDep, reads: _ReadSessionDep) -> Iterator[Session]:
    """The request's transaction: the read one for GET and HEAD, else one that takes SQLite's
    write lock when it begins."""
    if request.method in SAFE_METHODS:
        yield reads
        return
    with session_scope(sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(_session, scope="function")]


def _key_holder(
    request: Request,
    session: _ReadSessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
    session_token: Annotated[str | None, Depends(_session_cookie)],
) -> KeyHolder:
    """The key's owner, reviewer and role, looked up in the request's read transaction. A change
    ends that transaction here: the route's own transaction begins only when the route needs it,
    after an upload has streamed in, and no snapshot is held open meanwhile."""
    key = bearer.credentials if bearer is not None else header_key
    if key:
        holder = key_holder(session, key)
        if holder is None:
            raise AuthenticationError("invalid API key")
    elif session_token:
        if request.method not in SAFE_METHODS and "x-requested-with" not in request.headers:
            raise AuthenticationError("a request authenticated by the session cookie must send X-Requested-With")
        found = page_session(session, session_token)
        if found is None:
            raise AuthenticationError("the session has ended: log in again")
        holder = found.holder
    else:
        raise AuthenticationError("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
    if request.method not in SAFE_METHODS:
        session.close()  # its objects (the owner) detached, as the route's own session expects
    if holder.is_reviewer:
        _check_reviewer_may(request)
    return holder


def _check_reviewer_may(request: Request) -> None:
    route = request.scope.get("route")
    tags = set(getattr(route, "tags", ()) or ())
    path = getattr(route, "path", request.url.path)
    if tags & OWNER_ONLY_TAGS or path.endswith(OWNER_ONLY_PATH_SUFFIXES):
        raise PermissionDeniedError("a reviewer key may only review: this needs an owner key")
    if request.method not in SAFE_METHODS and not tags & REVIEWER_WRITE_TAGS:
        raise PermissionDeniedError("a reviewer key may only review: this change needs an owner key")


KeyHolderDep = Annotated[KeyHolder, Depends(_key_holder)]


def _page_session(
    request: Request, sessions: ReadSessionFactoryDep, session_token: Annotated[str | None, Depends(_session_cookie)]
) -> PageSession | None:
    """The pages' live session; None when nobody is logged in (or the session has ended). Its
    CSRF token is left in `request.state` for the page's logout form."""
    if not session_token:
        return None
    with sessions() as session:
        found = page_session(session, session_token)
    if found is not None:
        request.state.csrf_token = found.csrf_token
    return found


def _page_viewer(page: Annotated[PageSession | None, Depends(_page_session)]) -> KeyHolder | None:
    """The holder of the session's key, for the pages; None when nobody is logged in."""
    return None if page is None else page.holder


def _current_owner(holder: KeyHolderDep) -> Owner:
    return holder.owner


def _current_reviewer(holder: KeyHolderDep) -> Reviewer:
    return Reviewer(owner_id=holder.owner.id, name=holder.reviewer)


def _blob_store(settings: SettingsDep) -> BlobStore:
    return BlobStore(settings)


def _audit_queue(request: Request) -> AuditQueue:
    return request.app.state.audit_queue


CurrentOwner = Annotated[Owner, Depends(_current_owner)]
CurrentReviewer = Annotated[Reviewer, Depends(_current_reviewer)]
PageViewer = Annotated[KeyHolder | None, Depends(_page_viewer)]
PageSessionDep = Annotated[PageSession | None, Depends(_page_session)]
BlobStoreDep = Annotated[BlobStore, Depends(_blob_store)]
AuditQueueDep = Annotated[AuditQueue, Depends(_audit_queue)]
