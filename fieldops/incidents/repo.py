"""Every query on incidents, reports and incident events."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload

from fieldops.db.base import UTCDateTime
from fieldops.incidents.models import Channel, Incident, IncidentEvent, IncidentStatus, Report

# Advisory-lock cells for the duplicate search, in degrees: about 390 m east-west and
# 560 m north-south at Montréal's latitude, so the search box of the catalogue's radii
# (20 to 150 m) touches one to four cells. Larger cells make writers that could not see
# each other's incidents wait for each other more often; a larger box takes more locks.
LOCK_CELL_DEG = 0.005


@dataclass(frozen=True)
class IncidentFilter:
    statuses: frozenset[IncidentStatus] = frozenset()
    district_ids: frozenset[int] = frozenset()
    service_codes: frozenset[str] = frozenset()
    bbox: tuple[float, float, float, float] | None = None
    updated_since: datetime | None = None
    after_id: int = 0
    limit: int = 500


BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class DuplicateSearch:
    """Open incidents of ``group`` inside ``bbox`` last reported at or after ``since``."""

    group: str
    bbox: BBox
    since: datetime


@dataclass
class Candidate:
    """An open incident a new report might join."""

    id: int
    group: str
    lon: float
    lat: float
    last_report_at: datetime

    def answers(self, search: DuplicateSearch) -> bool:
        min_lon, min_lat, max_lon, max_lat = search.bbox
        return (
            self.group == search.group
            and min_lon <= self.lon <= max_lon
            and min_lat <= self.lat <= max_lat
            and self.last_report_at >= search.since
        )


def lock_duplicate_areas(session: Session, searches: Sequence[DuplicateSearch]) -> None:
    """Serialise duplicate searches that could see each other's new incidents.

    PostGIS: transaction advisory locks (see ``duplicate_locks``), all taken by one
    statement in ascending key order, so two transactions never deadlock on them.
    SpatiaLite needs nothing: every write transaction already holds the database lock
    from its first statement.
    """
    if not searches or session.get_bind().dialect.name != "postgresql":
        return
    locks = duplicate_locks(searches)
    # unnest yields the arrays in order and each lock is taken as its row is produced.
    session.execute(
        _LOCK_AREAS,
        {"keys": [key for key, _ in locks], "exclusive": [exclusive for _, exclusive in locks]},
    )


_LOCK_AREAS = sa.text(
    "SELECT count(CASE WHEN x THEN pg_advisory_xact_lock(k) ELSE pg_advisory_xact_lock_shared(k)"
    " END) FROM unnest(CAST(:keys AS bigint[]), CAST(:exclusive AS boolean[])) AS t(k, x)"
)

# A search box covering more cells than this locks its whole group instead.
MAX_LOCK_CELLS = 16


def duplicate_locks(searches: Sequence[DuplicateSearch]) -> list[tuple[int, bool]]:
    """The advisory locks of ``searches``, as (key, exclusive), ascending by key.

    A search locks each (group, cell) its box covers, exclusively, and its group in shared
    mode; a box covering more than ``MAX_LOCK_CELLS`` cells (a radius over about a
    kilometre) locks its group exclusively instead, so that no batch takes hundreds of
    locks (PostgreSQL's lock table is shared and bounded). Two searches of one group
    whose boxes meet so always hold one key in modes that conflict.
    """
    locks: dict[int, bool] = {}
    for search in searches:
        group = zlib.crc32(search.group.encode())
        min_lon, min_lat, max_lon, max_lat = search.bbox
        columns = range(int(min_lon // LOCK_CELL_DEG), int(max_lon // LOCK_CELL_DEG) + 1)
        rows = range(int(min_lat // LOCK_CELL_DEG), int(max_lat // LOCK_CELL_DEG) + 1)
        if len(columns) * len(rows) > MAX_LOCK_CELLS:
            locks[group] = True
            continue
        locks.setdefault(group, False)
        for cx in columns:
            for cy in rows:
                locks[zlib.crc32(f"{search.group}:{cx}:{cy}".encode())] = True
    return sorted(locks.items())


def open_incidents_near(session: Session, searches: Sequence[DuplicateSearch]) -> list[Candidate]:
    """Open incidents answering any of ``searches``, by id.

    PostGIS: one statement for every search (the searches travel as arrays and are
    joined with ``unnest``, so its text, and its plan, never change). SpatiaLite: one
    cached statement per search; it runs in process, so a query costs no round trip."""
    found: dict[int, Candidate] = {}
    if session.get_bind().dialect.name == "postgresql":
        rows = session.execute(
            _SEARCH_MANY,
            {
                "groups": [search.group for search in searches],
                "min_lon": [search.bbox[0] for search in searches],
                "min_lat": [search.bbox[1] for search in searches],
                "max_lon": [search.bbox[2] for search in searches],
                "max_lat": [search.bbox[3] for search in searches],
                "since": [search.since for search in searches],
            },
        )
        found.update((row.id, _candidate(row)) for row in rows)
    else:
        connection = session.connection()
        for search in searches:
            min_lon, min_lat, max_lon, max_lat = search.bbox
            for row in connection.execute(
                _SEARCH_ONE,
                {
                    "group": search.group,
                    "min_lon": min_lon,
                    "min_lat": min_lat,
                    "max_lon": max_lon,
                    "max_lat": max_lat,
                    "since": search.since,
                },
            ):
                found[row.id] = _candidate(row)
    return [found[key] for key in sorted(found)]


def _candidate(row: Any) -> Candidate:
    return Candidate(row.id, row.service_group, row.lon, row.lat, row.last_report_at)


_SEARCH_MANY = sa.text(
    """
    SELECT DISTINCT i.id, i.service_group, i.lon, i.lat, i.last_report_at
    FROM unnest(
        CAST(:groups AS text[]), CAST(:min_lon AS float8[]), CAST(:min_lat AS float8[]),
        CAST(:max_lon AS float8[]), CAST(:max_lat AS float8[]), CAST(:since AS timestamptz[])
    ) AS s(service_group, min_lon, min_lat, max_lon, max_lat, since)
    JOIN incidents AS i
      ON i.service_group = s.service_group
     AND i.is_open
     AND i.lat BETWEEN s.min_lat AND s.max_lat
     AND i.lon BETWEEN s.min_lon AND s.max_lon
     AND i.last_report_at >= s.since
    """
).columns(
    sa.column("id", sa.Integer),
    sa.column("service_group", sa.String),
    sa.column("lon", sa.Float),
    sa.column("lat", sa.Float),
    sa.column("last_report_at", UTCDateTime),
)


# One search, built once: a statement built per search cost more than running it.
_SEARCH_ONE = sa.select(
    Incident.id, Incident.service_group, Incident.lon, Incident.lat, Incident.last_report_at
).where(
    Incident.service_group == sa.bindparam("group"),
    Incident.is_open.is_(True),
    Incident.lat.between(sa.bindparam("min_lat"), sa.bindparam("max_lat")),
    Incident.lon.between(sa.bindparam("min_lon"), sa.bindparam("max_lon")),
    Incident.last_report_at >= sa.bindparam("since"),
)


# Built once: intake locks the incidents its reports join with every batch.
_LOCK_INCIDENTS = (
    sa.select(Incident)
    .where(Incident.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(Incident.id)
    .with_for_update()
)


def lock_incidents(session: Session, incident_ids: Sequence[int]) -> dict[int, Incident]:
    """The incidents, locked for update until the transaction ends, by id."""
    if not incident_ids:
        return {}
    return {
        incident.id: incident
        for incident in session.scalars(_LOCK_INCIDENTS, {"ids": sorted(set(incident_ids))})
    }


def reports_by_source(
    session: Session, refs: Sequence[tuple[Channel, str]]
) -> dict[tuple[Channel, str], Report]:
    """The stored reports among (channel, source_ref) pairs, by pair."""
    found: dict[tuple[Channel, str], Report] = {}
    for channel in sorted({channel for channel, _ in refs}):
        wanted = sorted({ref for ch, ref in refs if ch == channel})
        for start in range(0, len(wanted), 500):
            for report in session.scalars(
                _BY_SOURCE, {"channel": channel, "refs": wanted[start : start + 500]}
            ):
                assert report.source_ref is not None
                found[(channel, report.source_ref)] = report
    return found


# Built once: intake looks re-sent reports up with every batch that names its sources.
_BY_SOURCE = sa.select(Report).where(
    Report.channel == sa.bindparam("channel"),
    Report.source_ref.in_(sa.bindparam("refs", expanding=True)),
)


def get_incidents(session: Session, incident_ids: Sequence[int]) -> dict[int, Incident]:
    if not incident_ids:
        return {}
    return {
        incident.id: incident
        for incident in session.scalars(
            sa.select(Incident).where(Incident.id.in_(sorted(set(incident_ids))))
        )
    }


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


def add_events(session: Session, events: Sequence[dict[str, object]]) -> None:
    """Append many events (incident_id, at, actor, kind, data: every key in every row)
    with one executemany, not a statement each; their ids follow the order of ``events``.
    A plain INSERT on the table: the rows need nothing of the ORM's bulk path."""
    if events:
        session.connection().execute(_ADD_EVENTS, list(events))


_ADD_EVENTS = sa.insert(cast(sa.Table, IncidentEvent.__table__))
