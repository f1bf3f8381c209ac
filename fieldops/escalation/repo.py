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


_LATEST_POLICY = sa.select(sa.func.max(PolicyVersion.id))  # built once: intake asks per batch


def latest_policy_id(session: Session) -> int | None:
    return session.scalar(_LATEST_POLICY)


def steps_of(session: Session, incident_id: int) -> Sequence[EscalationStep]:
    return session.scalars(
        sa.select(EscalationStep)
        .where(EscalationStep.incident_id == incident_id)
        .order_by(EscalationStep.due_at, EscalationStep.id)
    ).all()


def steps_of_incidents(
    session: Session, incident_ids: Sequence[int]
) -> dict[int, list[EscalationStep]]:
    """``steps_of`` for many incidents with one query: incident id -> its steps, in order."""
    found: dict[int, list[EscalationStep]] = {i: [] for i in incident_ids}
    if not found:
        return found
    for step in session.scalars(_STEPS_OF_INCIDENTS, {"incident_ids": sorted(found)}):
        found[step.incident_id].append(step)
    return found


# Built once: every planning pass and every tick runs them.
_STEPS_OF_INCIDENTS = (
    sa.select(EscalationStep)
    .where(EscalationStep.incident_id.in_(sa.bindparam("incident_ids", expanding=True)))
    .order_by(EscalationStep.incident_id, EscalationStep.due_at, EscalationStep.id)
)
_CLAIM_DUE = (
    sa.select(EscalationStep)
    .where(
        EscalationStep.status == StepStatus.PLANNED,
        EscalationStep.due_at <= sa.bindparam("now", type_=EscalationStep.__table__.c.due_at.type),
    )
    .order_by(EscalationStep.due_at, EscalationStep.id)
    .limit(sa.bindparam("limit"))
)
_CLAIM_DUE_SKIP_LOCKED = _CLAIM_DUE.with_for_update(skip_locked=True)


def claim_due(session: Session, *, now: datetime, limit: int) -> Sequence[EscalationStep]:
    """Planned steps due at ``now``, oldest deadline first, locked for this transaction.

    PostGIS skips rows another scheduler holds (FOR UPDATE SKIP LOCKED), so two
    schedulers never take the same step; SpatiaLite's write lock serialises them anyway.
    """
    statement = (
        _CLAIM_DUE_SKIP_LOCKED if session.get_bind().dialect.name == "postgresql" else _CLAIM_DUE
    )
    return session.scalars(statement, {"now": now, "limit": limit}).all()


def next_due_at(session: Session) -> datetime | None:
    return session.scalar(
        sa.select(sa.func.min(EscalationStep.due_at)).where(
            EscalationStep.status == StepStatus.PLANNED
        )
    )


def settle_steps(
    session: Session, outcomes: Sequence[tuple[int, StepStatus, str]], *, now: datetime
) -> None:
    """Write the outcome (step id, status, reason) of many steps with one executemany of
    the UPDATE by primary key: one round trip on PostGIS (psycopg pipelines it), none on
    SpatiaLite. (A single UPDATE joined to the outcomes as arrays costs PostGIS as much:
    the time goes to rewriting the rows and their indexes, not to the statements.)"""
    if outcomes:
        session.execute(
            sa.update(EscalationStep),
            [
                {"id": id_, "status": status, "reason": reason, "settled_at": now}
                for id_, status, reason in outcomes
            ],
        )
