"""Every query on crews and their position fixes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.crews.models import Crew, CrewPosition, CrewStatus


def list_crews(session: Session) -> Sequence[Crew]:
    return session.scalars(sa.select(Crew).order_by(Crew.id)).all()


def crew_rows(
    session: Session,
    *,
    able_at: datetime | None = None,
    jobs: sa.ScalarSelect[int] | None = None,
    columns: Sequence[Any] | None = None,
) -> Sequence[Any]:
    """Every crew as a plain row (the ``columns``, by default those of ``Crew``, by
    name), by id; ``able_at``: only the crews that could take one more job then (on duty,
    on shift, and fewer than their capacity of active ``jobs``, a count correlated with
    the crew)."""
    statement = sa.select(*(columns if columns is not None else Crew.__table__.columns))
    if able_at is not None:
        statement = statement.where(
            Crew.status != CrewStatus.OFF_DUTY,
            Crew.shift_starts_at <= able_at,
            Crew.shift_ends_at > able_at,
        )
        if jobs is not None:
            statement = statement.where(jobs < Crew.capacity)
    # On the session's connection, not through the ORM: plain rows, at about half the cost.
    return session.connection().execute(statement.order_by(Crew.id)).all()


def crew_names(session: Session, crew_ids: Sequence[int]) -> dict[int, str]:
    """The names of these crews, by id."""
    if not crew_ids:
        return {}
    rows = session.execute(
        sa.select(Crew.id, Crew.name).where(Crew.id.in_(sorted(set(crew_ids))))
    ).all()
    return {crew_id: name for crew_id, name in rows}


def get_crew(session: Session, crew_id: int, *, lock: bool = False) -> Crew | None:
    statement = sa.select(Crew).where(Crew.id == crew_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def lock_crews(session: Session, crew_ids: Sequence[int]) -> dict[int, Crew]:
    """The crews, locked for update until the transaction ends, by id."""
    if not crew_ids:
        return {}
    return {
        crew.id: crew
        for crew in session.scalars(
            sa.select(Crew)
            .where(Crew.id.in_(sorted(set(crew_ids))))
            .order_by(Crew.id)
            .with_for_update()
        )
    }


def crew_by_name(session: Session) -> dict[str, Crew]:
    return {c.name: c for c in list_crews(session)}


def known_fix_times_of(
    session: Session, crew_ids: Sequence[int], fix_times: Sequence[object]
) -> set[tuple[int, object]]:
    """Which of these (crew, fix instant) pairs the crews already reported."""
    if not crew_ids or not fix_times:
        return set()
    rows = session.execute(
        sa.select(CrewPosition.crew_id, CrewPosition.fix_at).where(
            CrewPosition.crew_id.in_(sorted(set(crew_ids))),
            CrewPosition.fix_at.in_(list(fix_times)),
        )
    ).all()
    return {(crew_id, at) for crew_id, at in rows}


def track(session: Session, crew_id: int, *, limit: int = 500) -> Sequence[CrewPosition]:
    """The crew's latest fixes, oldest first."""
    rows = session.scalars(
        sa.select(CrewPosition)
        .where(CrewPosition.crew_id == crew_id)
        .order_by(CrewPosition.fix_at.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))
