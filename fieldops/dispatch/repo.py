"""Every query on assignments."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.dispatch.models import Assignment
from fieldops.incidents.models import Incident, IncidentStatus


def active_job_counts(session: Session) -> dict[int, int]:
    rows = session.execute(
        sa.select(Assignment.crew_id, sa.func.count())
        .where(Assignment.is_active.is_(True))
        .group_by(Assignment.crew_id)
    ).all()
    return {crew_id: count for crew_id, count in rows}


def active_assignment(session: Session, incident_id: int) -> Assignment | None:
    return session.scalars(
        sa.select(Assignment)
        .where(Assignment.incident_id == incident_id, Assignment.is_active.is_(True))
        .order_by(Assignment.id.desc())
        .limit(1)
    ).one_or_none()


def get_assignment(
    session: Session, assignment_id: int, *, lock: bool = False
) -> Assignment | None:
    statement = sa.select(Assignment).where(Assignment.id == assignment_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


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
