"""API keys: created for an owner (optionally naming the reviewer who uses the key) and shown
once (only their sha256 is stored, with a short prefix to tell keys apart), and resolved back to
their owner, reviewer and role on every request. A key may expire (`expires_at`) and is revoked
by its owner (`revoke_api_key`, which also ends the review-page sessions it opened); an expired or
revoked key authenticates nothing.

A key's role is 'owner' (everything of the owner's) or 'reviewer' (reviewing only, see
`api.deps`); a key made for a named reviewer is a reviewer key unless asked otherwise."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from core.services import InvalidParameterError, NotFoundError
from core.settings import Settings
from core.store.db import make_engine, make_session_factory, session_scope
from core.store.models import ApiKey, Owner, UiSession, utcnow
from migrations import upgrade_database

KEY_PREFIX = "lilaw_"
DISPLAY_PREFIX_LENGTH = 12
MAX_REVIEWER_LENGTH = ApiKey.__table__.c.reviewer.type.length
OWNER_ROLE = "owner"
REVIEWER_ROLE = "reviewer"
ROLES = (OWNER_ROLE, REVIEWER_ROLE)

T = TypeVar("T")


@dataclass(frozen=True)
class KeyHolder:
    owner: Owner
    reviewer: str  # the key's reviewer name, else the owner's name
    role: str = OWNER_ROLE
    key_id: int | None = None

    @property
    def is_reviewer(self) -> bool:
        return self.role == REVIEWER_ROLE


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(
    session: Session,
    owner_name: str,
    *,
    reviewer: str | None = None,
    role: str | None = None,
    expires_at: datetime | None = None,
) -> str:
    """A new key for the owner named `owner_name` (created if missing), used by `reviewer`; the
    only time it is seen. `role` defaults to 'reviewer' for a named reviewer, else 'owner'."""
    return _issue_key(session, owner_name, reviewer=reviewer, role=role, expires_at=expires_at)[0]


def _issue_key(
    session: Session, owner_name: str, *, reviewer: str | None, role: str | None, expires_at: datetime | None
) -> tuple[str, ApiKey]:
    if reviewer is not None and not 0 < len(reviewer.strip()) <= MAX_REVIEWER_LENGTH:
        raise InvalidParameterError(f"a reviewer name has 1 to {MAX_REVIEWER_LENGTH} characters")
    role = role or (OWNER_ROLE if reviewer is None else REVIEWER_ROLE)
    if role not in ROLES:
        raise InvalidParameterError(f"a key's role is one of {', '.join(ROLES)}")
    if expires_at is not None and (expires_at.tzinfo is None or expires_at <= utcnow()):
        raise InvalidParameterError("a key's expiry must be a time in the future, with its time zone")
    owner = session.scalar(select(Owner).where(Owner.name == owner_name))
    if owner is None:
        owner = Owner(name=owner_name)
        session.add(owner)
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey(
        owner_id=owner.id,
        prefix=key[:DISPLAY_PREFIX_LENGTH],
        key_hash=hash_key(key),
        reviewer=None if reviewer is None else reviewer.strip(),
        role=role,
        expires_at=expires_at,
    )
    session.add(api_key)
    session.flush()
    return key, api_key


def issue_key_for(
    session: Session, owner: Owner, *, reviewer: str | None, role: str | None, expires_at: datetime | None
) -> tuple[str, ApiKey]:
    """A new key of `owner` (the API's path: the owner exists); the key and its row."""
    return _issue_key(session, owner.name, reviewer=reviewer, role=role, expires_at=expires_at)


def usable_key() -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """The conditions on `ApiKey` of a key that is neither revoked nor expired."""
    now = utcnow()
    return ApiKey.revoked_at.is_(None), or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > now)


def key_holder(session: Session, key: str) -> KeyHolder | None:
    """Who holds `key`, if it is a key that is neither revoked nor expired."""
    statement = (
        select(Owner, ApiKey)
        .join(ApiKey, ApiKey.owner_id == Owner.id)
        .where(ApiKey.key_hash == hash_key(key), *usable_key())
    )
    found = session.execute(statement).one_or_none()
    return None if found is None else holder_of(*found)


def holder_of(owner: Owner, api_key: ApiKey) -> KeyHolder:
    return KeyHolder(owner=owner, reviewer=api_key.reviewer or owner.name, role=api_key.role, key_id=api_key.id)


def list_api_keys(session: Session, owner_id: int) -> list[ApiKey]:
    """The owner's keys, revoked and expired ones included, oldest first."""
    return list(session.scalars(select(ApiKey).where(ApiKey.owner_id == owner_id).order_by(ApiKey.id)))


def owned_key(session: Session, owner_id: int, key_id: int) -> ApiKey:
    api_key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.owner_id == owner_id))
    if api_key is None:
        raise NotFoundError(f"no API key {key_id} of the caller's")
    return api_key


def revoke_api_key(session: Session, owner_id: int, key_id: int) -> ApiKey:
    """Revoke one of the owner's keys (again: no change) and end the sessions it opened."""
    api_key = owned_key(session, owner_id, key_id)
    if api_key.revoked_at is None:
        api_key.revoked_at = utcnow()
    session.execute(delete(UiSession).where(UiSession.api_key_id == api_key.id))
    session.flush()
    return api_key


def set_key_expiry(session: Session, owner_id: int, key_id: int, expires_at: datetime | None) -> ApiKey:
    """Give one of the owner's keys an expiry (None: it never expires)."""
    if expires_at is not None and expires_at.tzinfo is None:
        raise InvalidParameterError("a key's expiry needs its time zone")
    api_key = owned_key(session, owner_id, key_id)
    api_key.expires_at = expires_at
    session.flush()
    return api_key


def in_database(settings: Settings, work: Callable[[Session], T]) -> T:
    """`work` in one transaction against the database of `settings`, brought up to date first
    (the command-line path: no server needs to run)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url, sqlite_begin="IMMEDIATE")
    try:
        with session_scope(make_session_factory(engine)) as session:
            return work(session)
    finally:
        engine.dispose()


def create_key_in_database(settings: Settings, owner_name: str, *, reviewer: str | None = None) -> str:
    """`create_api_key` against the database of `settings` (see `in_database`)."""
    return in_database(settings, lambda session: create_api_key(session, owner_name, reviewer=reviewer))
