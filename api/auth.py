"""API keys: created for an owner (optionally naming the reviewer who uses the key) and shown
once (only their sha256 is stored, with a short prefix to tell keys apart), and resolved back to
their owner and reviewer on every request."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.services import InvalidParameterError
from core.settings import Settings
from core.store.db import make_engine, make_session_factory, session_scope
from core.store.models import ApiKey, Owner
from migrations import upgrade_database

KEY_PREFIX = "lilaw_"
DISPLAY_PREFIX_LENGTH = 12
MAX_REVIEWER_LENGTH = ApiKey.__table__.c.reviewer.type.length


@dataclass(frozen=True)
class KeyHolder:
    owner: Owner
    reviewer: str  # the key's reviewer name, else the owner's name


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, owner_name: str, *, reviewer: str | None = None) -> str:
    """A new key for the owner named `owner_name` (created if missing), used by `reviewer`; the
    only time it is seen."""
    if reviewer is not None and not 0 < len(reviewer.strip()) <= MAX_REVIEWER_LENGTH:
        raise InvalidParameterError(f"a reviewer name has 1 to {MAX_REVIEWER_LENGTH} characters")
    owner = session.scalar(select(Owner).where(Owner.name == owner_name))
    if owner is None:
        owner = Owner(name=owner_name)
        session.add(owner)
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(
        ApiKey(
            owner_id=owner.id,
            prefix=key[:DISPLAY_PREFIX_LENGTH],
            key_hash=hash_key(key),
            reviewer=None if reviewer is None else reviewer.strip(),
        )
    )
    session.flush()
    return key


def key_holder(session: Session, key: str) -> KeyHolder | None:
    statement = (
        select(Owner, ApiKey.reviewer)
        .join(ApiKey, ApiKey.owner_id == Owner.id)
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )
    found = session.execute(statement).one_or_none()
    if found is None:
        return None
    owner, reviewer = found
    return KeyHolder(owner=owner, reviewer=reviewer or owner.name)


def create_key_in_database(settings: Settings, owner_name: str, *, reviewer: str | None = None) -> str:
    """`create_api_key` against the database of `settings`, brought up to date first (the
    command-line path: no server needs to run)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url, sqlite_begin="IMMEDIATE")
    try:
        with session_scope(make_session_factory(engine)) as session:
            return create_api_key(session, owner_name, reviewer=reviewer)
    finally:
        engine.dispose()
