"""Issuing, checking and revoking API keys."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.auth.models import ApiKey, Role
from fieldops.crews.models import Crew
from fieldops.errors import InvalidInput, NotFound

KEY_PREFIX = "fo_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, name and role."""

    key_id: int
    name: str
    role: Role
    crew_id: int | None = None

    @property
    def actor(self) -> str:
        return f"{self.role}:{self.name}"


def digest_secret(secret: str) -> str:
    # A plain SHA-256 is right here: the secrets carry 256 bits of entropy, so a slow
    # password hash adds nothing but a per-request cost.
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def create_key(
    session: Session, *, name: str, role: Role, now: datetime, crew_id: int | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret, which is never stored or shown again.

    A crew key names its crew and sees only that crew's work."""
    if (role == Role.CREW) != (crew_id is not None):
        raise InvalidInput.for_field("crew_id", "a crew key needs its crew, and only a crew key")
    if crew_id is not None and session.get(Crew, crew_id) is None:
        raise InvalidInput.for_field("crew_id", f"no crew with id {crew_id}")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        role=role,
        digest=digest_secret(secret),
        prefix=secret[:10],
        created_at=now,
        revoked_at=None,
        crew_id=crew_id,
    )
    session.add(key)
    session.flush()
    return key, secret


def authenticate(session: Session, secret: str) -> Principal | None:
    """The principal for a secret, or None when it is unknown or revoked."""
    row = session.execute(
        sa.select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.crew_id).where(
            ApiKey.digest == digest_secret(secret), ApiKey.revoked_at.is_(None)
        )
    ).one_or_none()
    if row is None:
        return None
    return Principal(key_id=row.id, name=row.name, role=Role(row.role), crew_id=row.crew_id)


def revoke_key(session: Session, *, key_id: int, now: datetime) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key with id {key_id}")
    if key.revoked_at is None:
        key.revoked_at = now
    session.flush()
    return key


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(sa.select(ApiKey).order_by(ApiKey.id)))
