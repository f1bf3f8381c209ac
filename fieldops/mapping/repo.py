"""The map's reads: open incidents as plain rows, the event feed, crews, active assignments
and the served area.

A read model over other domains' tables: columns only (no ORM objects), because a map reads
tens of thousands of incidents at once, and nothing here ever writes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.crews.models import Crew
from fieldops.dispatch.models import Assignment
from fieldops.districts.models import District
from fieldops.incidents.models import Incident, IncidentEvent, IncidentStatus


@dataclass(frozen=True)
class MapFilter:
    """Which open incidents a layer shows; an empty set means no restriction."""

    statuses: frozenset[IncidentStatus] = frozenset()
    service_codes: frozenset[str] = frozenset()
    service_groups: frozenset[str] = frozenset()
    district_ids: frozenset[int] = frozenset()
    bbox: tuple[float, float, float, float] | None = None


MAP_COLUMNS = (
    Incident.id,
    Incident.lon,
    Incident.lat,
    Incident.service_code,
    Incident.status,
    Incident.priority,
    Incident.district_id,
    Incident.report_count,
)
HOTSPOT_COLUMNS = (
    Incident.id,
    Incident.lon,
    Incident.lat,
    Incident.service_group,
    Incident.report_count,
    Incident.first_report_at,
    Incident.last_report_at,
)


def _filtered(query: sa.Select[Any], filters: MapFilter) -> sa.Select[Any]:
    if filters.statuses:
        query = query.where(Incident.status.in_(sorted(filters.statuses)))
    if filters.service_codes:
        query = query.where(Incident.service_code.in_(sorted(filters.service_codes)))
    if filters.service_groups:
        query = query.where(Incident.service_group.in_(sorted(filters.service_groups)))
    if filters.district_ids:
        query = query.where(Incident.district_id.in_(sorted(filters.district_ids)))
    if filters.bbox is not None:
        min_lon, min_lat, max_lon, max_lat = filters.bbox
        query = query.where(
            Incident.lon.between(min_lon, max_lon), Incident.lat.between(min_lat, max_lat)
        )
    return query


def open_incident_rows(
    session: Session, filters: MapFilter = MapFilter(), *, hotspot_columns: bool = False
) -> Sequence[Any]:
    """Open incidents matching ``filters``, in id order: the map's columns, or the ones hot
    spots need."""
    columns = HOTSPOT_COLUMNS if hotspot_columns else MAP_COLUMNS
    query = sa.select(*columns).where(Incident.is_open.is_(True))
    return session.execute(_filtered(query, filters).order_by(Incident.id)).all()


def incident_rows(session: Session, ids: Collection[int]) -> list[Any]:
    """The map's columns of these incidents, open or closed (500 ids per query)."""
    wanted = sorted(ids)
    rows: list[Any] = []
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows.extend(
            session.execute(
                sa.select(*MAP_COLUMNS, Incident.is_open)
                .where(Incident.id.in_(chunk))
                .order_by(Incident.id)
            ).all()
        )
    return rows


def latest_event_id(session: Session) -> int:
    """The highest incident event id (0 when there is none): the feed's cursor."""
    return int(session.scalar(sa.select(sa.func.max(IncidentEvent.id))) or 0)


def events_since(
    session: Session, after_id: int, *, also_ids: Collection[int] = (), limit: int = 1000
) -> Sequence[IncidentEvent]:
    """Events with an id above ``after_id``, plus those of ``also_ids`` (ids the client saw
    missing earlier), oldest first."""
    condition = IncidentEvent.id > after_id
    if also_ids:
        condition = sa.or_(condition, IncidentEvent.id.in_(sorted(also_ids)))
    return session.scalars(
        sa.select(IncidentEvent).where(condition).order_by(IncidentEvent.id).limit(limit)
    ).all()


def served_area_m2(session: Session) -> float | None:
    """The districts' total area in square metres (None before districts are loaded)."""
    area = session.scalar(sa.select(sa.func.sum(District.area_m2)))
    return float(area) if area else None


def district_version(session: Session) -> tuple[int, int]:
    """How many districts there are and their highest id (changes when districts do)."""
    count, highest = session.execute(
        sa.select(sa.func.count(District.id), sa.func.max(District.id))
    ).one()
    return int(count or 0), int(highest or 0)


def crew_rows(session: Session) -> Sequence[Any]:
    """Every crew: name, status, last fix (or None) and depot, in id order."""
    return session.execute(
        sa.select(
            Crew.id,
            Crew.name,
            Crew.status,
            Crew.last_lon,
            Crew.last_lat,
            Crew.last_fix_at,
            Crew.depot_lon,
            Crew.depot_lat,
        ).order_by(Crew.id)
    ).all()


def active_assignment_rows(
    session: Session, incident_ids: Collection[int] | None = None
) -> Sequence[Any]:
    """Active assignments (incident, crew, crew name, status, assigned_at, eta_s), of these
    incidents or of all."""
    query = (
        sa.select(
            Assignment.incident_id,
            Assignment.crew_id,
            Crew.name.label("crew_name"),
            Assignment.status,
            Assignment.assigned_at,
            Assignment.eta_s,
        )
        .join(Crew, Crew.id == Assignment.crew_id)
        .where(Assignment.is_active.is_(True))
        .order_by(Assignment.id)
    )
    if incident_ids is not None:
        if not incident_ids:
            return []
        query = query.where(Assignment.incident_id.in_(sorted(incident_ids)))
    return session.execute(query).all()
