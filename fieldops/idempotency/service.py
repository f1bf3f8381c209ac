"""Replaying the first answer to a retried write, and remembering answers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.errors import Conflict, InvalidInput
from fieldops.idempotency.models import IdempotentResponse

MAX_KEY_LENGTH = 200


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: Any


def fingerprint(method: str, path: str, payload: Any) -> str:
    """What makes two requests "the same request": method, path and the parsed body."""
    try:
        canonical = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=str)
    except TypeError:
        # JSON allows integers past 64 bits, which orjson refuses: the stdlib takes them.
        canonical = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise InvalidInput.for_field("Idempotency-Key", f"must be 1 to {MAX_KEY_LENGTH} characters")
    return key


def find_response(
    session: Session, *, api_key_id: int, key: str, fingerprint: str
) -> StoredResponse | None:
    """The stored answer for this key, or None. The same key on another request is a conflict."""
    row = session.scalars(
        sa.select(IdempotentResponse).where(
            IdempotentResponse.api_key_id == api_key_id, IdempotentResponse.key == key
        )
    ).one_or_none()
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise Conflict(
            f"Idempotency-Key {key!r} was already used for a different request; "
            "use a new key for a new request"
        )
    return StoredResponse(row.status_code, row.body)


def remember_response(
    session: Session,
    *,
    api_key_id: int,
    key: str,
    fingerprint: str,
    status_code: int,
    body: Any,
    now: datetime,
) -> None:
    session.add(
        IdempotentResponse(
            api_key_id=api_key_id,
            key=key,
            fingerprint=fingerprint,
            status_code=status_code,
            body=body,
            created_at=now,
        )
    )
