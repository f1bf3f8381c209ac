"""Queries behind Open311's GET requests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.incidents.models import Incident, IncidentEvent, Report


@dataclass(frozen=True)
class RequestQuery:
    """Filters of GET requests; ``ids`` overrides all the others, as the spec says."""

    ids: tuple[int, ...] = ()
    service_codes: tuple[str, ...] = ()
    requested_from: datetime | None = None
    requested_to: datetime | None = None
    open_only: bool | None = None  # None: open and closed
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    bbox: tuple[float, float, float, float] | None = None
    offset: int = 0
    limit: int = 1000


def find_requests(session: Session, query: RequestQuery) -> Sequence[sa.Row[Report, Incident]]:
    """Reports with their incidents, most recently requested first."""
    statement = sa.select(Report, Incident).join(Incident, Incident.id == Report.incident_id)
    if query.ids:
        statement = statement.where(Report.id.in_(query.ids))
    else:
        if query.service_codes:
            statement = statement.where(Report.service_code.in_(query.service_codes))
        if query.requested_from is not None:
            statement = statement.where(Report.requested_at >= query.requested_from)
        if query.requested_to is not None:
            statement = statement.where(Report.requested_at <= query.requested_to)
        if query.open_only is not None:
            statement = statement.where(Incident.is_open.is_(query.open_only))
        if query.updated_after is not None:
            statement = statement.where(Incident.updated_at >= query.updated_after)
        if query.updated_before is not None:
            statement = statement.where(Incident.updated_at <= query.updated_before)
        if query.bbox is not None:
            min_lon, min_lat, max_lon, max_lat = query.bbox
            statement = statement.where(
                Report.lon.between(min_lon, max_lon), Report.lat.between(min_lat, max_lat)
            )
    statement = (
        statement.order_by(Report.requested_at.desc(), Report.id.desc())
        .offset(query.offset)
        .limit(query.limit)
    )
    return session.execute(statement).all()


def events_of(session: Session, incident_ids: Sequence[int]) -> dict[int, list[IncidentEvent]]:
    """Every event of the given incidents, oldest first, grouped by incident."""
    grouped: dict[int, list[IncidentEvent]] = {i: [] for i in incident_ids}
    if not incident_ids:
        return grouped
    for event in session.scalars(
        sa.select(IncidentEvent)
        .where(IncidentEvent.incident_id.in_(sorted(set(incident_ids))))
        .order_by(IncidentEvent.id)
    ):
        grouped[event.incident_id].append(event)
    return grouped
