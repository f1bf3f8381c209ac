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
    statement = crew_select(able=able_at is not None, jobs=jobs, columns=columns)
    # On the session's connection, not through the ORM: plain rows, at about half the cost.
    return session.connection().execute(statement, {"able_at": able_at}).all()


def crew_select(
    *,
    able: bool = False,
    jobs: sa.ScalarSelect[int] | None = None,
    columns: Sequence[Any] | None = None,
) -> sa.Select[Any]:
    """The statement ``crew_rows`` runs, built once by a caller that runs it often;
    ``able``: only the crews able at the bound parameter ``able_at``."""
    statement = sa.select(*(columns if columns is not None else Crew.__table__.columns))
    if able:
        able_at = sa.bindparam("able_at", type_=Crew.__table__.c.shift_starts_at.type)
        statement = statement.where(
            Crew.status != CrewStatus.OFF_DUTY,
            Crew.shift_starts_at <= able_at,
            Crew.shift_ends_at > able_at,
        )
        if jobs is not None:
            statement = statement.where(jobs < Crew.capacity)
    return statement.order_by(Crew.id)


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
    return {crew.id: crew for crew in session.scalars(_LOCK_CREWS, {"ids": sorted(set(crew_ids))})}


# Built once: crews' steps and position fixes lock their crews at every drill drain.
_LOCK_CREWS = (
    sa.select(Crew)
    .where(Crew.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(Crew.id)
    .with_for_update()
)


def crew_by_name(session: Session) -> dict[str, Crew]:
    return {c.name: c for c in list_crews(session)}


def known_fix_times_of(
    session: Session, crew_ids: Sequence[int], fix_times: Sequence[object]
) -> set[tuple[int, object]]:
    """Which of these (crew, fix instant) pairs the crews already reported."""
    if not crew_ids or not fix_times:
        return set()
    rows = session.execute(
        _KNOWN_FIXES, {"crew_ids": sorted(set(crew_ids)), "fix_times": list(fix_times)}
    ).all()
    return {(crew_id, at) for crew_id, at in rows}


_KNOWN_FIXES = sa.select(CrewPosition.crew_id, CrewPosition.fix_at).where(
    CrewPosition.crew_id.in_(sa.bindparam("crew_ids", expanding=True)),
    CrewPosition.fix_at.in_(
        sa.bindparam("fix_times", expanding=True, type_=CrewPosition.__table__.c.fix_at.type)
    ),
)


def track(session: Session, crew_id: int, *, limit: int = 500) -> Sequence[CrewPosition]:
    """The crew's latest fixes, oldest first."""
    rows = session.scalars(
        sa.select(CrewPosition)
        .where(CrewPosition.crew_id == crew_id)
        .order_by(CrewPosition.fix_at.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


def add_positions(session: Session, rows: Sequence[dict[str, object]]) -> None:
    """Store many fixes (crew_id, lon, lat, fix_at, received_at) with one executemany;
    their ids follow the order of ``rows``."""
    if rows:
        session.connection().execute(sa.insert(CrewPosition), list(rows))
