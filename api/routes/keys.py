"""/keys: the caller's API keys: list them, create one (shown once), give one an expiry, revoke
one. Owner keys only: a reviewer key gets 403 here (see `api.deps`)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api import auth
from api.deps import CurrentOwner, SessionDep
from api.schemas.common import DbId, ErrorPublic
from api.schemas.keys import KeyCreate, KeyCreated, KeyPublic, KeyUpdate
from core.store.models import ApiKey, utcnow

router = APIRouter(
    prefix="/keys",
    tags=["keys"],
    responses={
        401: {"model": ErrorPublic, "description": "missing or invalid API key"},
        403: {"model": ErrorPublic, "description": "a reviewer key"},
        404: {"model": ErrorPublic, "description": "no such key of the caller's"},
        422: {"model": ErrorPublic, "description": "invalid request"},
    },
)


def _public(api_key: ApiKey) -> dict:
    active = api_key.revoked_at is None and (api_key.expires_at is None or api_key.expires_at > utcnow())
    return {**{name: getattr(api_key, name) for name in KeyPublic.model_fields if name != "active"}, "active": active}


@router.get("")
def list_keys(owner: CurrentOwner, session: SessionDep) -> list[KeyPublic]:
    """The caller's keys, oldest first, revoked and expired ones included (never the keys themselves)."""
    return [KeyPublic.model_validate(_public(api_key)) for api_key in auth.list_api_keys(session, owner.id)]


@router.post("", status_code=201)
def create_key(body: KeyCreate, owner: CurrentOwner, session: SessionDep) -> KeyCreated:
    """A new key of the caller's; keep it from this response, it is never shown again."""
    key, api_key = auth.issue_key_for(
        session, owner, reviewer=body.reviewer, role=body.role, expires_at=body.expires_at
    )
    return KeyCreated.model_validate({**_public(api_key), "key": key})


@router.patch("/{key_id}")
def update_key(key_id: DbId, body: KeyUpdate, owner: CurrentOwner, session: SessionDep) -> KeyPublic:
    """Give one of the caller's keys an expiry (or none)."""
    return KeyPublic.model_validate(_public(auth.set_key_expiry(session, owner.id, key_id, body.expires_at)))


@router.delete("/{key_id}", status_code=204)
def revoke_key(key_id: DbId, owner: CurrentOwner, session: SessionDep) -> Response:
    """Revoke one of the caller's keys: it, and the review-page sessions it opened, stop working
    at once. Revoking the key of this very request is allowed."""
    auth.revoke_api_key(session, owner.id, key_id)
    return Response(status_code=204)
