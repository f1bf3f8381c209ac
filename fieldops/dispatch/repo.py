"""Every query on assignments."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.crews.models import Crew
from fieldops.dispatch.models import Assignment, AssignmentStatus
from fieldops.incidents.models import Incident, IncidentStatus


def active_job_counts(session: Session, *, crew_ids: Sequence[int] | None = None) -> dict[int, int]:
    """Active assignments per crew (of ``crew_ids``, else of every crew); a crew with none
    is absent."""
    if crew_ids is None:
        rows = session.execute(_JOB_COUNTS.group_by(Assignment.crew_id)).all()
    elif not crew_ids:
        return {}
    else:
        rows = session.execute(_JOB_COUNTS_OF, {"crew_ids": sorted(set(crew_ids))}).all()
    return {crew_id: count for crew_id, count in rows}


# The statements a tick runs again and again, built once (building one, and deriving its
# cache key, cost about as much as running it); lists of ids go in as expanding parameters.
_JOB_COUNTS = sa.select(Assignment.crew_id, sa.func.count()).where(Assignment.is_active.is_(True))
_JOB_COUNTS_OF = _JOB_COUNTS.where(
    Assignment.crew_id.in_(sa.bindparam("crew_ids", expanding=True))
).group_by(Assignment.crew_id)
_ACTIVE_STATUSES = (
    sa.select(Assignment.crew_id, Assignment.status)
    .where(
        Assignment.crew_id.in_(sa.bindparam("crew_ids", expanding=True)),
        Assignment.is_active.is_(True),
    )
    .distinct()
)
_EVERY_ACTIVE = (
    sa.select(Assignment.id, Assignment.crew_id, Assignment.status)
    .where(Assignment.is_active.is_(True))
    .order_by(Assignment.id)
)
_ACTIVE_OF_INCIDENTS = (
    sa.select(Assignment)
    .where(Assignment.incident_id.in_(sa.bindparam("incident_ids", expanding=True)))
    .where(Assignment.is_active.is_(True))
    .order_by(Assignment.id)
)
_LOCK_FOR_STEPS = (
    sa.select(Assignment, Incident, Crew)
    .join(Incident, Incident.id == Assignment.incident_id)
    .join(Crew, Crew.id == Assignment.crew_id)
    .where(Assignment.id.in_(sa.bindparam("assignment_ids", expanding=True)))
    # Incidents locked in id order, as everywhere else (no deadlock with intake).
    .order_by(Incident.id, Assignment.id)
    .with_for_update(of=[Assignment.__table__, Incident.__table__])
)


def every_active_assignment(session: Session) -> Sequence[sa.Row[int, int, str]]:
    """(id, crew id, status) of every active assignment, in id order, as plain rows."""
    return session.execute(_EVERY_ACTIVE).all()


def active_jobs_of_crew() -> sa.ScalarSelect[int]:
    """The number of active assignments of the crew of the enclosing query."""
    return (
        sa.select(sa.func.count())
        .where(Assignment.crew_id == Crew.id, Assignment.is_active.is_(True))
        .correlate(Crew)
        .scalar_subquery()
    )


def active_job_count(session: Session, crew_id: int) -> int:
    """``active_job_counts`` for one crew."""
    count = session.scalar(
        sa.select(sa.func.count()).where(
            Assignment.crew_id == crew_id, Assignment.is_active.is_(True)
        )
    )
    return int(count or 0)


def active_assignment_statuses(
    session: Session, crew_ids: Sequence[int]
) -> dict[int, set[AssignmentStatus]]:
    """The steps each crew's active assignments are at, with one query: crew id -> steps
    (a crew with no active assignment is absent)."""
    found: dict[int, set[AssignmentStatus]] = {}
    if not crew_ids:
        return found
    rows = session.execute(_ACTIVE_STATUSES, {"crew_ids": sorted(set(crew_ids))})
    for crew_id, status in rows:
        found.setdefault(crew_id, set()).add(AssignmentStatus(status))
    return found


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
    rows = session.scalars(_ACTIVE_OF_INCIDENTS, {"incident_ids": sorted(set(incident_ids))})
    return {a.incident_id: a for a in rows}  # the newest wins, as in active_assignment


def get_assignment(
    session: Session, assignment_id: int, *, lock: bool = False
) -> Assignment | None:
    statement = sa.select(Assignment).where(Assignment.id == assignment_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def lock_assignments_for_steps(
    session: Session, assignment_ids: Sequence[int]
) -> dict[int, tuple[Assignment, Incident, Crew]]:
    """The assignments with their incidents, both locked for update until the transaction
    ends, and their crews (not locked): what crews' steps change, in one statement.
    Assignment id -> (assignment, incident, crew); an unknown id is absent."""
    if not assignment_ids:
        return {}
    rows = session.execute(_LOCK_FOR_STEPS, {"assignment_ids": sorted(set(assignment_ids))}).all()
    return {a.id: (a, i, c) for a, i, c in rows}


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
    incident_ids: Sequence[int] | None = None,
    limit: int = 5000,
) -> Sequence[sa.Row[int, str, int, int, float, float, datetime]]:
    """The open incidents without a crew, as plain rows (``id``, ``service_code``,
    ``priority``, ``district_id``, ``lon``, ``lat``, ``opened_at``): what a batch round
    plans with. A storm's backlog is read at every scheduler tick, and the few incidents
    a round assigns are locked and loaded by the assignment itself."""
    statement = sa.select(
        Incident.id,
        Incident.service_code,
        Incident.priority,
        Incident.district_id,
        Incident.lon,
        Incident.lat,
        Incident.opened_at,
    ).where(Incident.status == IncidentStatus.OPEN)
    if incident_ids is not None:
        statement = statement.where(Incident.id.in_(sorted(set(incident_ids))))
    if district_ids:
        statement = statement.where(Incident.district_id.in_(list(district_ids)))
    if bbox is not None:
        min_lon, min_lat, max_lon, max_lat = bbox
        statement = statement.where(
            Incident.lon.between(min_lon, max_lon), Incident.lat.between(min_lat, max_lat)
        )
    return session.execute(
        statement.order_by(Incident.priority, Incident.opened_at).limit(limit)
    ).all()


def assignments_of_incident(session: Session, incident_id: int) -> Sequence[Assignment]:
    return session.scalars(
        sa.select(Assignment).where(Assignment.incident_id == incident_id).order_by(Assignment.id)
    ).all()
