"""What a drill reads back and the greedy baseline: the incident timeline, the crews' tracks
and a greedy batch round through the same assign_crew."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.crews.models import Crew, CrewPosition
from fieldops.dispatch import repo as dispatch_repo
from fieldops.dispatch.batch import BatchIncident, assign_greedy
from fieldops.dispatch.models import Assignment, AssignmentStatus
from fieldops.dispatch.roster import crew_states
from fieldops.dispatch.service import TravelModel, assign_crew
from fieldops.districts.models import District
from fieldops.incidents.models import Incident, Report


def greedy_round(
    session: Session, *, now: datetime, travel: TravelModel, actor: str, stale_after: timedelta
) -> None:
    """The greedy baseline (report order, nearest capable crew) through the same assign_crew."""
    from fieldops.catalog.repo import list_service_types

    incidents = sorted(
        dispatch_repo.unassigned_open_incidents(session), key=lambda i: (i.opened_at, i.id)
    )
    crews = crew_states(session, now=now, stale_after=stale_after)
    if not incidents or not crews:
        return
    skills = {s.code: frozenset(s.skills) for s in list_service_types(session)}
    rows = travel.travel_matrix(
        [c.lon for c in crews],
        [c.lat for c in crews],
        [i.lon for i in incidents],
        [i.lat for i in incidents],
    )
    eta = np.vstack([r.seconds for r in rows])
    plan = assign_greedy(
        [BatchIncident(i.id, i.priority, skills[i.service_code]) for i in incidents],
        crews,
        eta,
        now,
    )
    for a in plan.assignments:
        assign_crew(
            session,
            a.incident_id,
            a.crew_id,
            actor=actor,
            now=now,
            travel=travel,
            stale_after=stale_after,
            eta_s=a.eta_s,
        )


def incident_timeline(session: Session) -> pd.DataFrame:
    """One row per incident with the instants of each stage (NaT where never reached)."""
    incidents = session.execute(
        sa.select(
            Incident.id,
            Incident.service_code,
            Incident.priority,
            Incident.status,
            Incident.district_id,
            Incident.lon,
            Incident.lat,
            Incident.opened_at,
            Incident.closed_at,
            Incident.resolve_due_at,
            Incident.dispatch_due_at,
            Incident.report_count,
            Incident.emergency_id,
        ).order_by(Incident.id)
    ).all()
    columns = [
        "incident_id",
        "service_code",
        "priority",
        "status",
        "district_id",
        "lon",
        "lat",
        "reported_at",
        "closed_at",
        "resolve_due_at",
        "dispatch_due_at",
        "report_count",
        "emergency_id",
    ]
    table = pd.DataFrame([tuple(r) for r in incidents], columns=columns)
    stages = session.execute(
        sa.select(
            Assignment.incident_id,
            sa.func.min(Assignment.assigned_at),
            sa.func.min(Assignment.accepted_at),
            sa.func.min(Assignment.arrived_at),
            sa.func.count(Assignment.id),
        ).group_by(Assignment.incident_id)
    ).all()
    done = dict(
        session.execute(
            sa.select(Assignment.incident_id, sa.func.min(Assignment.finished_at))
            .where(Assignment.status == AssignmentStatus.DONE)
            .group_by(Assignment.incident_id)
        ).all()
    )
    by_id = {r[0]: r[1:] for r in stages}
    table["dispatched_at"] = table["incident_id"].map(lambda i: by_id.get(i, (None,) * 4)[0])
    table["acknowledged_at"] = table["incident_id"].map(lambda i: by_id.get(i, (None,) * 4)[1])
    table["on_scene_at"] = table["incident_id"].map(lambda i: by_id.get(i, (None,) * 4)[2])
    table["assignments"] = table["incident_id"].map(lambda i: by_id.get(i, (0,) * 4)[3])
    table["resolved_at"] = table["incident_id"].map(done.get)
    for column in [
        "reported_at",
        "closed_at",
        "resolve_due_at",
        "dispatch_due_at",
        "dispatched_at",
        "acknowledged_at",
        "on_scene_at",
        "resolved_at",
    ]:
        table[column] = pd.to_datetime(table[column], utc=True)
    table["status"] = table["status"].astype(str)
    reports = dict(
        session.execute(
            sa.select(Report.incident_id, sa.func.count(Report.id)).group_by(Report.incident_id)
        ).all()
    )
    table["report_count"] = table["incident_id"].map(reports).fillna(0).astype(int)
    rows = session.execute(sa.select(District.id, District.code, District.name)).all()
    names = {i: (c, n) for i, c, n in rows}
    table["district"] = table["district_id"].map(lambda i: names.get(i, ("?", "?"))[0])
    table["district_name"] = table["district_id"].map(lambda i: names.get(i, ("?", "?"))[1])
    return table


def crew_tracks(session: Session, crew_ids: list[int]) -> pd.DataFrame:
    """Every position fix of the drill's crews, by crew then time."""
    rows = session.execute(
        sa.select(
            CrewPosition.crew_id, Crew.name, CrewPosition.lon, CrewPosition.lat, CrewPosition.fix_at
        )
        .join(Crew, Crew.id == CrewPosition.crew_id)
        .where(CrewPosition.crew_id.in_(crew_ids))
        .order_by(CrewPosition.crew_id, CrewPosition.fix_at)
    ).all()
    table = pd.DataFrame(
        [tuple(r) for r in rows], columns=["crew_id", "crew", "lon", "lat", "fix_at"]
    )
    table["fix_at"] = pd.to_datetime(table["fix_at"], utc=True)
    return table
