"""Key administration routes (admin only)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from fieldops.api.deps import Admin, DbSession, Now, ReadSession, State
from fieldops.auth.models import ApiKey, Role
from fieldops.auth.service import create_key, list_keys, revoke_key
from fieldops.db.base import RowId

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


class KeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role
    crew_id: RowId | None = Field(
        default=None, description="required for (and only for) a crew key"
    )


class KeyRead(BaseModel):
    id: int
    name: str
    role: Role
    prefix: str
    crew_id: int | None
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyRead):
    secret: str = Field(description="shown once; store it now")


def _read(key: ApiKey) -> KeyRead:
    return KeyRead.model_validate(key, from_attributes=True)


@router.get("", response_model=list[KeyRead])
def get_keys(session: ReadSession, _admin: Admin) -> list[KeyRead]:
    return [_read(k) for k in list_keys(session)]


@router.post("", response_model=KeyCreated, status_code=201)
def post_key(body: KeyCreate, session: DbSession, _admin: Admin, now: Now) -> KeyCreated:
    key, secret = create_key(session, name=body.name, role=body.role, now=now, crew_id=body.crew_id)
    result = KeyCreated(**_read(key).model_dump(), secret=secret)
    session.commit()
    return result


@router.post("/{key_id}/revoke", response_model=KeyRead)
def post_revoke(
    key_id: RowId, session: DbSession, state: State, _admin: Admin, now: Now
) -> KeyRead:
    """Revoke a key: at once in this process, within seconds in every other one."""
    key = revoke_key(session, key_id=key_id, now=now)
    result = _read(key)
    session.commit()
    state.forget_principals()
    return result
