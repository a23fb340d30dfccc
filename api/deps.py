"""Request dependencies: settings, the request's database session (committed once, or rolled
back, before the response is sent), the authenticated owner and reviewer, the blob store, the
audit queue.

An API key comes in the `Authorization: Bearer` or `X-API-Key` header, or, for the review pages,
in the HTTP-only, SameSite=Strict cookie set by their login form. A request authenticated by the
cookie that changes something must also carry an `X-Requested-With` header, which a page of
another origin cannot send without the CORS permission this API never grants."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.auth import KeyHolder, key_holder
from api.errors import AuthenticationError
from api.queue import AuditQueue
from core.services.blobs import BlobStore
from core.services.decisions import Reviewer
from core.settings import Settings
from core.store.db import session_scope
from core.store.models import Owner

_bearer = HTTPBearer(auto_error=False, description="an API key from `lilaw-audit create-key`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, in its own header")
SESSION_COOKIE = "lilaw_api_key"
_api_key_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="the key, set by /ui/login")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _session_factory(request: Request) -> sessionmaker[Session]:
    return request.app.state.sessions


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionFactoryDep = Annotated[sessionmaker[Session], Depends(_session_factory)]


def _session(sessions: SessionFactoryDep) -> Iterator[Session]:
    with session_scope(sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(_session, scope="function")]


def _key_holder(
    request: Request,
    sessions: SessionFactoryDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
    cookie_key: Annotated[str | None, Depends(_api_key_cookie)],
) -> KeyHolder:
    """The key's owner and reviewer, looked up in a transaction of its own: the request's
    transaction begins only when the route needs it, after an upload has streamed in."""
    key = bearer.credentials if bearer is not None else header_key
    if not key and cookie_key:
        if request.method not in SAFE_METHODS and "x-requested-with" not in request.headers:
            raise AuthenticationError("a request authenticated by the session cookie must send X-Requested-With")
        key = cookie_key
    if not key:
        raise AuthenticationError("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
    with sessions() as session:
        holder = key_holder(session, key)
    if holder is None:
        raise AuthenticationError("invalid API key")
    return holder


KeyHolderDep = Annotated[KeyHolder, Depends(_key_holder)]


def _page_viewer(
    sessions: SessionFactoryDep, cookie_key: Annotated[str | None, Depends(_api_key_cookie)]
) -> KeyHolder | None:
    """The holder of the session cookie's key, for the pages; None when nobody is logged in."""
    if not cookie_key:
        return None
    with sessions() as session:
        return key_holder(session, cookie_key)


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
BlobStoreDep = Annotated[BlobStore, Depends(_blob_store)]
AuditQueueDep = Annotated[AuditQueue, Depends(_audit_queue)]
