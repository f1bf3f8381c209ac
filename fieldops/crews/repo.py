"""Every query on crews and their position fixes."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.crews.models import Crew, CrewPosition


def list_crews(session: Session) -> Sequence[Crew]:
    return session.scalars(sa.select(Crew).order_by(Crew.id)).all()


def crew_rows(session: Session) -> Sequence[sa.Row[tuple[object, ...]]]:
    """Every crew as a plain row (the columns of ``Crew`` by name), by id."""
    return session.execute(sa.select(*Crew.__table__.columns).order_by(Crew.id)).all()


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


def known_fix_times(session: Session, crew_id: int, fix_times: Sequence[object]) -> set[object]:
    """Which of these fix instants the crew already reported."""
    if not fix_times:
        return set()
    return set(
        session.scalars(
            sa.select(CrewPosition.fix_at).where(
                CrewPosition.crew_id == crew_id, CrewPosition.fix_at.in_(list(fix_times))
            )
        )
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
