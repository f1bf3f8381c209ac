"""Running a write at most once per Idempotency-Key, for every route that takes one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from fieldops.api.responses import JSONBody
from fieldops.auth.service import Principal
from fieldops.idempotency import service as idempotency


@dataclass(frozen=True)
class WriteResult:
    status_code: int
    body: Any
    replayed: bool = False


def write_once(
    session: Session,
    *,
    principal: Principal,
    key: str | None,
    fingerprint: str,
    now: datetime,
    work: Callable[[], tuple[int, Any]],
) -> WriteResult:
    """Run ``work`` (which flushes, never commits) and commit it with its stored answer.

    With a key: a request already answered returns that answer (``replayed``) and runs
    nothing; the same key on a different request raises Conflict. Two concurrent
    requests with one key race on a unique row: the loser rolls back and replays the
    winner's answer, so the work is never done twice.
    """
    if key is None:
        status, body = work()
        session.commit()
        return WriteResult(status, body)

    key = idempotency.check_key(key)
    stored = idempotency.find_response(
        session, api_key_id=principal.key_id, key=key, fingerprint=fingerprint
    )
    if stored is not None:
        return WriteResult(stored.status_code, stored.body, replayed=True)
    status, body = work()
    idempotency.remember_response(
        session,
        api_key_id=principal.key_id,
        key=key,
        fingerprint=fingerprint,
        status_code=status,
        body=body,
        now=now,
    )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        stored = idempotency.find_response(
            session, api_key_id=principal.key_id, key=key, fingerprint=fingerprint
        )
        if stored is None:
            raise
        return WriteResult(stored.status_code, stored.body, replayed=True)
    return WriteResult(status, body)


def answer(done: WriteResult) -> JSONBody:
    """The HTTP answer of a write: its status and body, marked when it is a replay."""
    headers = {"Idempotent-Replayed": "true"} if done.replayed else None
    return JSONBody(done.body, status_code=done.status_code, headers=headers)
