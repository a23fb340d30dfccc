"""The review pages' server-side sessions. Logging in with an API key opens a session: a random
token goes into the HTTP-only cookie, its sha256 into `ui_sessions` with an expiry and a CSRF
token of its own. The cookie never holds the key. Logging out deletes the session; revoking the
key ends all of its sessions; an expired session, or one whose key has expired or was revoked,
authenticates nothing.

Forms that change the session (login, logout) are CSRF-protected twice: a token in the form that
must match the session's (logout) or a double-submit cookie (login, before any session exists),
and an Origin (else Referer) that, when the browser sends one, must be this site's."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from starlette.requests import Request

from api.auth import KeyHolder, hash_key, holder_of, usable_key
from core.store.models import ApiKey, Owner, UiSession, utcnow

SESSION_LIFETIME = timedelta(hours=12)


@dataclass(frozen=True)
class PageSession:
    holder: KeyHolder
    csrf_token: str


def open_session(session: Session, holder: KeyHolder) -> tuple[str, UiSession]:
    """A new session of the key `holder` logged in with; its token (for the cookie) and row."""
    if holder.key_id is None:
        raise ValueError("a session belongs to a stored key")
    token = secrets.token_urlsafe(32)
    row = UiSession(
        token_hash=hash_key(token),
        api_key_id=holder.key_id,
        csrf_token=secrets.token_urlsafe(32),
        expires_at=utcnow() + SESSION_LIFETIME,
    )
    session.add(row)
    # Logging in is a good moment to forget the sessions that have expired.
    session.execute(delete(UiSession).where(UiSession.expires_at <= utcnow()))
    session.flush()
    return token, row


def page_session(session: Session, token: str) -> PageSession | None:
    """The live session of the cookie's `token`, with the holder of its (usable) key."""
    statement = (
        select(Owner, ApiKey, UiSession.csrf_token)
        .join(ApiKey, ApiKey.owner_id == Owner.id)
        .join(UiSession, UiSession.api_key_id == ApiKey.id)
        .where(UiSession.token_hash == hash_key(token), UiSession.expires_at > utcnow(), *usable_key())
    )
    found = session.execute(statement).one_or_none()
    if found is None:
        return None
    owner, api_key, csrf_token = found
    return PageSession(holder=holder_of(owner, api_key), csrf_token=csrf_token)


def close_session(session: Session, token: str) -> None:
    session.execute(delete(UiSession).where(UiSession.token_hash == hash_key(token)))


def tokens_match(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected.encode(), given.encode())


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from a page of another origin (Origin, else
    Referer); True when it says it comes from this site, or says nothing (a non-browser client,
    which the CSRF token still has to pass)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return True
    if source == "null":
        return False
    parts = urlsplit(source)
    return (parts.scheme, parts.netloc) == (request.url.scheme, request.url.netloc)
