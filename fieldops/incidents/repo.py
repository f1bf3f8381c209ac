"""Every query on incidents, reports and incident events."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from fieldops.incidents.models import Channel, Incident, IncidentEvent, IncidentStatus, Report

# Advisory-lock cells for the duplicate search, in degrees: larger than any duplicate
# radius, so one report's search box touches at most four cells.
LOCK_CELL_DEG = 0.02


@dataclass(frozen=True)
class IncidentFilter:
    statuses: frozenset[IncidentStatus] = frozenset()
    district_ids: frozenset[int] = frozenset()
    service_codes: frozenset[str] = frozenset()
    bbox: tuple[float, float, float, float] | None = None
    updated_since: datetime | None = None
    after_id: int = 0
    limit: int = 500


def lock_duplicate_area(
    session: Session, group: str, bbox: tuple[float, float, float, float]
) -> None:
    """Serialise duplicate searches that could see each other's new incidents.

    PostGIS: a transaction advisory lock per (group, cell) the box touches, taken in
    a fixed order so two reports never deadlock. SpatiaLite needs nothing: every
    write transaction already holds the database lock from its first statement.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    min_lon, min_lat, max_lon, max_lat = bbox
    cells = {
        (int(lon // LOCK_CELL_DEG), int(lat // LOCK_CELL_DEG))
        for lon in (min_lon, max_lon)
        for lat in (min_lat, max_lat)
    }
    keys = sorted(zlib.crc32(f"{group}:{cx}:{cy}".encode()) for cx, cy in cells)
    for key in keys:
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def open_incidents_near(
    session: Session,
    *,
    group: str,
    bbox: tuple[float, float, float, float],
    reported_since: datetime,
) -> Sequence[sa.Row[int, float, float]]:
    """Open incidents of ``group`` inside ``bbox`` whose last report is at or after the instant."""
    min_lon, min_lat, max_lon, max_lat = bbox
    return session.execute(
        sa.select(Incident.id, Incident.lon, Incident.lat)
        .where(
            Incident.service_group == group,
            Incident.is_open.is_(True),
            Incident.lat.between(min_lat, max_lat),
            Incident.lon.between(min_lon, max_lon),
            Incident.last_report_at >= reported_since,
        )
        .order_by(Incident.id)
    ).all()


def get_incident(
    session: Session, incident_id: int, *, with_reports: bool = False
) -> Incident | None:
    options = [selectinload(Incident.reports)] if with_reports else []
    return session.get(Incident, incident_id, options=options)


def lock_incident(session: Session, incident_id: int) -> Incident | None:
    """The incident, locked for update until the transaction ends."""
    return session.scalars(
        sa.select(Incident).where(Incident.id == incident_id).with_for_update()
    ).one_or_none()


def find_report_by_source(session: Session, channel: Channel, source_ref: str) -> Report | None:
    return session.scalars(
        sa.select(Report).where(Report.channel == channel, Report.source_ref == source_ref)
    ).one_or_none()


def existing_source_refs(session: Session, channel: Channel, refs: Sequence[str]) -> set[str]:
    """Which of ``refs`` are already stored for ``channel`` (one query per 500 refs)."""
    found: set[str] = set()
    for start in range(0, len(refs), 500):
        chunk = list(refs[start : start + 500])
        found.update(
            session.scalars(
                sa.select(Report.source_ref).where(
                    Report.channel == channel, Report.source_ref.in_(chunk)
                )
            )
        )
    return found


def list_incidents(session: Session, filters: IncidentFilter) -> Sequence[Incident]:
    query = sa.select(Incident).where(Incident.id > filters.after_id)
    if filters.statuses:
        query = query.where(Incident.status.in_(sorted(filters.statuses)))
    if filters.district_ids:
        query = query.where(Incident.district_id.in_(sorted(filters.district_ids)))
    if filters.service_codes:
        query = query.where(Incident.service_code.in_(sorted(filters.service_codes)))
    if filters.bbox is not None:
        min_lon, min_lat, max_lon, max_lat = filters.bbox
        query = query.where(
            Incident.lon.between(min_lon, max_lon), Incident.lat.between(min_lat, max_lat)
        )
    if filters.updated_since is not None:
        query = query.where(Incident.updated_at >= filters.updated_since)
    return session.scalars(query.order_by(Incident.id).limit(filters.limit)).all()


def list_events(session: Session, incident_id: int, *, limit: int = 200) -> Sequence[IncidentEvent]:
    return session.scalars(
        sa.select(IncidentEvent)
        .where(IncidentEvent.incident_id == incident_id)
        .order_by(IncidentEvent.id.desc())
        .limit(limit)
    ).all()


def events_after(session: Session, after_id: int, *, limit: int = 1000) -> Sequence[IncidentEvent]:
    """The change feed: events with an id above the cursor, oldest first."""
    return session.scalars(
        sa.select(IncidentEvent)
        .where(IncidentEvent.id > after_id)
        .order_by(IncidentEvent.id)
        .limit(limit)
    ).all()
