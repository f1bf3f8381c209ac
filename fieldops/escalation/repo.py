"""Every query on escalation policies and steps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.escalation.models import EscalationStep, PolicyVersion, StepStatus


def latest_policy(session: Session) -> PolicyVersion | None:
    return session.scalars(
        sa.select(PolicyVersion).order_by(PolicyVersion.id.desc()).limit(1)
    ).one_or_none()


def latest_policy_id(session: Session) -> int | None:
    return session.scalar(sa.select(sa.func.max(PolicyVersion.id)))


def steps_of(session: Session, incident_id: int) -> Sequence[EscalationStep]:
    return session.scalars(
        sa.select(EscalationStep)
        .where(EscalationStep.incident_id == incident_id)
        .order_by(EscalationStep.due_at, EscalationStep.id)
    ).all()


def claim_due(session: Session, *, now: datetime, limit: int) -> Sequence[EscalationStep]:
    """Planned steps due at ``now``, oldest deadline first, locked for this transaction.

    PostGIS skips rows another scheduler holds (FOR UPDATE SKIP LOCKED), so two
    schedulers never take the same step; SpatiaLite's write lock serialises them anyway.
    """
    statement = (
        sa.select(EscalationStep)
        .where(EscalationStep.status == StepStatus.PLANNED, EscalationStep.due_at <= now)
        .order_by(EscalationStep.due_at, EscalationStep.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    return session.scalars(statement).all()


def next_due_at(session: Session) -> datetime | None:
    return session.scalar(
        sa.select(sa.func.min(EscalationStep.due_at)).where(
            EscalationStep.status == StepStatus.PLANNED
        )
    )
