"""Request dependencies: settings, the request's database session (committed once, or rolled
back, before the response is sent), the authenticated owner, the blob store, the audit queue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session, sessionmaker

from api.auth import owner_of_key
from api.errors import AuthenticationError
from api.queue import AuditQueue
from core.services.blobs import BlobStore
from core.settings import Settings
from core.store.db import session_scope
from core.store.models import Owner

_bearer = HTTPBearer(auto_error=False, description="an API key from `lilaw-audit create-key`")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, in its own header")


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


def _current_owner(
    sessions: SessionFactoryDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key_header)],
) -> Owner:
    """The key's owner, looked up in a transaction of its own: the request's transaction begins
    only when the route needs it, after an upload has streamed in."""
    key = bearer.credentials if bearer is not None else header_key
    if not key:
        raise AuthenticationError("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
    with sessions() as session:
        owner = owner_of_key(session, key)
    if owner is None:
        raise AuthenticationError("invalid API key")
    return owner


def _blob_store(settings: SettingsDep) -> BlobStore:
    return BlobStore(settings)


def _audit_queue(request: Request) -> AuditQueue:
    return request.app.state.audit_queue


CurrentOwner = Annotated[Owner, Depends(_current_owner)]
BlobStoreDep = Annotated[BlobStore, Depends(_blob_store)]
AuditQueueDep = Annotated[AuditQueue, Depends(_audit_queue)]
