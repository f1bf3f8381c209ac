"""Every query on assignments."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.crews.models import Crew
from fieldops.dispatch.models import Assignment, AssignmentStatus
from fieldops.incidents.models import Incident, IncidentStatus


def active_job_counts(session: Session) -> dict[int, int]:
    rows = session.execute(
        sa.select(Assignment.crew_id, sa.func.count())
        .where(Assignment.is_active.is_(True))
        .group_by(Assignment.crew_id)
    ).all()
    return {crew_id: count for crew_id, count in rows}


def active_job_count(session: Session, crew_id: int) -> int:
    """``active_job_counts`` for one crew."""
    count = session.scalar(
        sa.select(sa.func.count()).where(
            Assignment.crew_id == crew_id, Assignment.is_active.is_(True)
        )
    )
    return int(count or 0)


def active_assignment_statuses(session: Session, crew_id: int) -> set[AssignmentStatus]:
    """The steps the crew's active assignments are at."""
    return {
        AssignmentStatus(status)
        for status in session.scalars(
            sa.select(Assignment.status)
            .where(Assignment.crew_id == crew_id, Assignment.is_active.is_(True))
            .distinct()
        )
    }


def active_assignment(session: Session, incident_id: int) -> Assignment | None:
    return session.scalars(
        sa.select(Assignment)
        .where(Assignment.incident_id == incident_id, Assignment.is_active.is_(True))
        .order_by(Assignment.id.desc())
        .limit(1)
    ).one_or_none()


def active_assignments(session: Session, incident_ids: Sequence[int]) -> dict[int, Assignment]:
    """``active_assignment`` for many incidents with one query: incident id -> assignment."""
    if not incident_ids:
        return {}
    rows = session.scalars(
        sa.select(Assignment)
        .where(Assignment.incident_id.in_(sorted(set(incident_ids))))
        .where(Assignment.is_active.is_(True))
        .order_by(Assignment.id)
    )
    return {a.incident_id: a for a in rows}  # the newest wins, as in active_assignment


def get_assignment(
    session: Session, assignment_id: int, *, lock: bool = False
) -> Assignment | None:
    statement = sa.select(Assignment).where(Assignment.id == assignment_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def lock_assignment_for_step(
    session: Session, assignment_id: int
) -> tuple[Assignment, Incident, Crew] | None:
    """The assignment with its incident, both locked for update until the transaction
    ends, and its crew (not locked): what a crew's step changes, in one statement."""
    row = session.execute(
        sa.select(Assignment, Incident, Crew)
        .join(Incident, Incident.id == Assignment.incident_id)
        .join(Crew, Crew.id == Assignment.crew_id)
        .where(Assignment.id == assignment_id)
        .with_for_update(of=[Assignment.__table__, Incident.__table__])
    ).one_or_none()
    if row is None:
        return None
    assignment, incident, crew = row
    return assignment, incident, crew


def crew_assignments(
    session: Session, crew_id: int, *, active_only: bool = True
) -> Sequence[tuple[Assignment, Incident]]:
    statement = (
        sa.select(Assignment, Incident)
        .join(Incident, Incident.id == Assignment.incident_id)
        .where(Assignment.crew_id == crew_id)
    )
    if active_only:
        statement = statement.where(Assignment.is_active.is_(True))
    return [(a, i) for a, i in session.execute(statement.order_by(Assignment.id)).all()]


def unassigned_open_incidents(
    session: Session,
    *,
    district_ids: Sequence[int] = (),
    bbox: tuple[float, float, float, float] | None = None,
    limit: int = 5000,
) -> Sequence[Incident]:
    statement = sa.select(Incident).where(Incident.status == IncidentStatus.OPEN)
    if district_ids:
        statement = statement.where(Incident.district_id.in_(list(district_ids)))
    if bbox is not None:
        min_lon, min_lat, max_lon, max_lat = bbox
        statement = statement.where(
            Incident.lon.between(min_lon, max_lon), Incident.lat.between(min_lat, max_lat)
        )
    return session.scalars(
        statement.order_by(Incident.priority, Incident.opened_at).limit(limit)
    ).all()


def assignments_of_incident(session: Session, incident_id: int) -> Sequence[Assignment]:
    return session.scalars(
        sa.select(Assignment).where(Assignment.incident_id == incident_id).order_by(Assignment.id)
    ).all()
