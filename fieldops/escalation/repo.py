"""Every query on escalation policies and steps."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

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


@dataclass(eq=False)
class StepRow:
    """A step as planning reads and changes it, without an ORM object: planning reads
    every step of the incidents it plans and changes a few (``write_step_rows``)."""

    id: int
    incident_id: int
    key: str
    deadline: str
    status: str
    deadline_at: datetime
    due_at: datetime
    reason: str
    settled_at: datetime | None

    def __post_init__(self) -> None:
        self._read = self._values()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _CHANGEABLE)

    def changes(self) -> dict[str, Any]:
        """The columns changed since the row was read, with their new values."""
        return {
            name: new
            for name, old, new in zip(_CHANGEABLE, self._read, self._values(), strict=True)
            if new != old
        }


_CHANGEABLE = tuple(f.name for f in fields(StepRow) if f.name not in ("id", "incident_id"))


def step_rows_of_incidents(
    session: Session, incident_ids: Sequence[int]
) -> dict[int, list[StepRow | EscalationStep]]:
    """Every step of these incidents, by incident id, in due order (``steps_of`` for many
    incidents with one query), as plain rows, but for a step the session already holds
    as an object: that object, whose changes not yet written count (as a query for
    objects would give it)."""
    found: dict[int, list[StepRow | EscalationStep]] = {i: [] for i in incident_ids}
    if not found:
        return found
    held = session.identity_map
    rows = session.connection().execute(_STEP_ROWS_OF_INCIDENTS, {"incident_ids": sorted(found)})
    for row in rows:
        step = held.get(identity_key(EscalationStep, row[0]))
        found[row[1]].append(step if step is not None else StepRow(*row))
    return found


def write_step_rows(session: Session, steps: Sequence[StepRow]) -> None:
    """Write what planning changed in these rows: one UPDATE per set of columns changed
    (settled ones, re-timed ones), each with its rows in id order."""
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for step in sorted(steps, key=lambda s: s.id):
        changed = step.changes()
        if changed:
            by_columns.setdefault(tuple(sorted(changed)), []).append(
                {"step_id": step.id, **changed}
            )
    connection = session.connection()
    for columns, values in by_columns.items():
        connection.execute(_update_of(columns), values)


@functools.cache
def _update_of(columns: tuple[str, ...]) -> sa.Update:
    table = cast(sa.Table, EscalationStep.__table__)
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("step_id"))
        .values({name: sa.bindparam(name, type_=table.c[name].type) for name in columns})
    )


# Built once: every planning pass and every tick runs them.
_STEP_ROWS_OF_INCIDENTS = (
    sa.select(*(EscalationStep.__table__.c[name] for name in ("id", "incident_id", *_CHANGEABLE)))
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
