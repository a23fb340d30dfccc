"""API keys: created for an owner and shown once (only their sha256 is stored, with a short
prefix to tell keys apart), and resolved back to their owner on every request."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.models import ApiKey, Owner

KEY_PREFIX = "lilaw_"
DISPLAY_PREFIX_LENGTH = 12


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(session: Session, owner_name: str) -> str:
    """A new key for the owner named `owner_name` (created if missing); the only time it is seen."""
    owner = session.scalar(select(Owner).where(Owner.name == owner_name))
    if owner is None:
        owner = Owner(name=owner_name)
        session.add(owner)
        session.flush()
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiKey(owner_id=owner.id, prefix=key[:DISPLAY_PREFIX_LENGTH], key_hash=hash_key(key)))
    session.flush()
    return key


def owner_of_key(session: Session, key: str) -> Owner | None:
    statement = (
        select(Owner)
        .join(ApiKey, ApiKey.owner_id == Owner.id)
        .where(ApiKey.key_hash == hash_key(key), ApiKey.revoked_at.is_(None))
    )
    return session.scalar(statement)
