"""Use cases of incidents: open, merge reports into, change, and record every change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from fieldops.db.base import ewkt_point
from fieldops.db.ids import give_ids
from fieldops.errors import Conflict, InvalidInput, NotFound
from fieldops.escalation.service import plan_incident
from fieldops.incidents import repo
from fieldops.incidents.lifecycle import ALLOWED, can_move
from fieldops.incidents.models import Incident, IncidentEvent, IncidentStatus, Report

# Events gathered as plain rows (incident_id, at, actor, kind, data), in log order, for a
# caller that writes many of them with one statement (``repo.add_events``).
EventRows = list[dict[str, object]]


def record_event(
    session: Session,
    incident: Incident,
    *,
    kind: str,
    actor: str,
    now: datetime,
    data: dict[str, Any] | None = None,
    rows: EventRows | None = None,
) -> None:
    """Append one event to the incident's log (its audit trail and the map's change feed).
    ``rows``: gather it there as a plain row instead of adding an object to the session
    (a batch writes its log with one statement; see ``write_events``)."""
    if rows is not None:
        rows.append(
            {
                "incident_id": incident.id,
                "at": now,
                "actor": actor,
                "kind": kind,
                "data": data or {},
            }
        )
        return
    session.add(
        IncidentEvent(incident_id=incident.id, at=now, actor=actor, kind=kind, data=data or {})
    )


def write_events(session: Session, rows: EventRows) -> None:
    """Write gathered events with one statement; the database numbers them in order.

    New objects already in the session (another use case's, not yet flushed) are
    flushed first: they were logged first, and an id given to one of them must not be
    taken by these rows (``give_ids``)."""
    if not rows:
        return
    if session.new:
        give_ids(session, session.new)
        session.flush()
    repo.add_events(session, rows)
    rows.clear()


@dataclass(frozen=True)
class NewIncident:
    service_code: str
    service_group: str
    priority: int
    district_id: int
    lon: float
    lat: float
    address: str
    description: str
    reported_at: datetime


def open_incident(session: Session, new: NewIncident, *, actor: str, now: datetime) -> Incident:
    incident = new_incident(new, now=now)
    session.add(incident)
    session.flush()
    return incident


def new_incident(new: NewIncident, *, now: datetime) -> Incident:
    """The incident ``new`` opens, not yet added to a session."""
    return Incident(
        service_code=new.service_code,
        service_group=new.service_group,
        status=IncidentStatus.OPEN,
        is_open=True,
        priority=new.priority,
        district_id=new.district_id,
        lon=new.lon,
        lat=new.lat,
        geom=ewkt_point(new.lon, new.lat),
        address=new.address,
        description=new.description,
        opened_at=new.reported_at,
        updated_at=now,
        closed_at=None,
        first_report_at=new.reported_at,
        last_report_at=new.reported_at,
        report_count=1,
        status_notes="",
    )


def attach_report(
    session: Session,
    incident: Incident,
    report: Report,
    *,
    distance_m: float,
    actor: str,
    now: datetime,
    rows: EventRows | None = None,
) -> None:
    """Count ``report`` as one more report of ``incident`` and say so in its log (into
    ``rows``, when given: see ``record_event``)."""
    incident.report_count += 1
    incident.first_report_at = min(incident.first_report_at, report.requested_at)
    incident.last_report_at = max(incident.last_report_at, report.requested_at)
    incident.updated_at = now
    record_event(
        session,
        incident,
        kind="report_merged",
        actor=actor,
        now=now,
        data={"report_id": str(report.id), "distance_m": round(distance_m, 1)},
        rows=rows,
    )


@dataclass(frozen=True)
class IncidentChange:
    status: IncidentStatus | None = None
    priority: int | None = None
    note: str | None = None


def check_status_change(incident: Incident, status: IncidentStatus) -> None:
    """Conflict when the lifecycle does not let the incident become ``status``."""
    current = IncidentStatus(incident.status)
    if status != current and not can_move(current, status):
        allowed = ", ".join(sorted(ALLOWED[current])) or "none"
        raise Conflict(
            f"incident {incident.id} is {current}: it cannot become {status} "
            f"(allowed next: {allowed})"
        )


def change_status(
    session: Session,
    incident: Incident,
    status: IncidentStatus,
    *,
    actor: str,
    now: datetime,
    note: str | None = None,
    rows: EventRows | None = None,
) -> None:
    """Move an incident the caller holds locked to ``status``, checking the lifecycle, and
    log the move (into ``rows``, when given: see ``record_event``); nothing is written
    until the caller flushes, and nothing is re-planned (the caller plans once every
    change of its use case is in)."""
    if status == incident.status:
        return
    check_status_change(incident, status)
    current = IncidentStatus(incident.status)
    record_event(
        session,
        incident,
        kind="status_changed",
        actor=actor,
        now=now,
        data={"from": str(current), "to": str(status), "note": note or ""},
        rows=rows,
    )
    incident.status = status
    incident.is_open = not status.is_closed
    incident.closed_at = now if status.is_closed else None
    if note:
        incident.status_notes = note
    incident.updated_at = max(incident.updated_at, now)  # a late-applied step never goes back


def update_incident(
    session: Session,
    incident_id: int,
    change: IncidentChange,
    *,
    actor: str,
    now: datetime,
) -> Incident:
    """Change status and/or priority, checking the lifecycle; each change is an event."""
    incident = repo.lock_incident(session, incident_id)
    if incident is None:
        raise NotFound(f"no incident with id {incident_id}")
    if change.status is not None:
        change_status(session, incident, change.status, actor=actor, now=now, note=change.note)
    if change.priority is not None and change.priority != incident.priority:
        if not 1 <= change.priority <= 5:
            raise InvalidInput.for_field("priority", "must be between 1 and 5")
        record_event(
            session,
            incident,
            kind="priority_changed",
            actor=actor,
            now=now,
            data={"from": incident.priority, "to": change.priority},
        )
        incident.priority = change.priority
    incident.updated_at = now
    session.flush()
    plan_incident(session, incident, now=now)
    return incident
