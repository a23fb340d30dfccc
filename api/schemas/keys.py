"""An owner's API keys: listed (never the key itself), created (the key shown once), given an
expiry, revoked."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, ConfigDict, Field

from api.schemas.common import Schema

KeyRole = Literal["owner", "reviewer"]


class KeyCreate(Schema):
    model_config = ConfigDict(extra="forbid")

    reviewer: str | None = Field(
        None, min_length=1, max_length=100, description="who uses the key (default: the owner)"
    )
    role: KeyRole | None = Field(
        None, description="'owner': everything; 'reviewer': reviewing only. Default: reviewer when `reviewer` is named"
    )
    expires_at: AwareDatetime | None = Field(None, description="when the key stops working (default: never)")


class KeyUpdate(Schema):
    model_config = ConfigDict(extra="forbid")

    expires_at: AwareDatetime | None = Field(description="when the key stops working; null: never")


class KeyPublic(Schema):
    model_config = ConfigDict(from_attributes=True)

    id: int
    prefix: str = Field(description="the key's first characters, to tell keys apart")
    reviewer: str | None
    role: KeyRole
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    active: bool = Field(description="neither revoked nor expired")


class KeyCreated(KeyPublic):
    key: str = Field(description="the key itself: shown only in this response")
