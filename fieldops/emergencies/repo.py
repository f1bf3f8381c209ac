"""Every query on emergencies, and on the incidents an emergency reaches."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable, Sequence
from datetime import datetime

import shapely
import sqlalchemy as sa
from geoalchemy2.shape import to_shape
from shapely.geometry import MultiPolygon
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from fieldops.emergencies.area import BBox, contains_points
from fieldops.emergencies.models import Emergency
from fieldops.incidents.models import Incident


def is_active(emergency: Emergency, *, now: datetime) -> bool:
    """Declared by ``now`` and not ended by then (the escalation planner's reading too)."""
    return emergency.declared_at <= now and (emergency.ended_at is None or emergency.ended_at > now)


def _active(now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(
        Emergency.declared_at <= now,
        sa.or_(Emergency.ended_at.is_(None), Emergency.ended_at > now),
    )


# Parsed areas by digest: an area never changes once declared, and intake tests every
# report against the areas of the active emergencies.
_SHAPES: dict[str, MultiPolygon] = {}


def area_digest(area: MultiPolygon) -> str:
    return hashlib.sha256(shapely.to_wkb(area)).hexdigest()


def area_shape(emergency: Emergency) -> MultiPolygon:
    """The emergency's area, parsed (and prepared) once per process: the polygon is read
    from the database only the first time."""
    shape = _SHAPES.get(emergency.area_digest) if emergency.area_digest else None
    if shape is None:
        parsed = to_shape(emergency.area)
        assert isinstance(parsed, MultiPolygon)
        shapely.prepare(parsed)
        shape = parsed
        if emergency.area_digest:
            if len(_SHAPES) >= 64:
                _SHAPES.clear()
            _SHAPES[emergency.area_digest] = shape
    return shape


def bbox(emergency: Emergency) -> BBox:
    return emergency.min_lon, emergency.min_lat, emergency.max_lon, emergency.max_lat


def get_emergency(session: Session, emergency_id: int, *, lock: bool = False) -> Emergency | None:
    statement = sa.select(Emergency).where(Emergency.id == emergency_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalars(statement).one_or_none()


def emergency_factors(
    session: Session, emergency_ids: Iterable[int]
) -> dict[int, tuple[datetime | None, float]]:
    """(end, deadline factor) of these emergencies, by id, read as plain rows with one
    query: what planning needs of an incident's emergency (an unknown id is absent). One
    the session holds is taken as held, changes not yet written included."""
    found: dict[int, tuple[datetime | None, float]] = {}
    unheld = []
    for emergency_id in sorted(set(emergency_ids)):
        emergency = session.identity_map.get(identity_key(Emergency, emergency_id))
        if emergency is not None:
            found[emergency_id] = (emergency.ended_at, emergency.deadline_factor)
        else:
            unheld.append(emergency_id)
    if unheld:
        for emergency_id, ended_at, factor in session.execute(_FACTORS, {"ids": unheld}):
            found[emergency_id] = (ended_at, factor)
    return found


_FACTORS = sa.select(Emergency.id, Emergency.ended_at, Emergency.deadline_factor).where(
    Emergency.id.in_(sa.bindparam("ids", expanding=True))
)


def list_emergencies(
    session: Session, *, active: bool | None = None, now: datetime
) -> Sequence[Emergency]:
    """Newest first; ``active`` True or False keeps only the active or the ended ones."""
    statement = sa.select(Emergency)
    if active is True:
        statement = statement.where(_active(now))
    elif active is False:
        statement = statement.where(sa.not_(_active(now)))
    return session.scalars(statement.order_by(Emergency.id.desc())).all()


# Built once: intake asks for the active emergencies with every batch.
_ACTIVE = (
    sa.select(Emergency)
    .where(
        Emergency.declared_at <= sa.bindparam("now"),
        sa.or_(Emergency.ended_at.is_(None), Emergency.ended_at > sa.bindparam("now")),
    )
    .order_by(Emergency.id)
)


def active_emergencies(session: Session, *, now: datetime) -> Sequence[Emergency]:
    return session.scalars(_ACTIVE, {"now": now}).all()


def active_emergencies_within(
    session: Session, *, earliest: datetime, latest: datetime
) -> Sequence[Emergency]:
    """The emergencies active at some instant from ``earliest`` to ``latest``, by id: what
    ``emergencies_at`` may answer for any point at any of those instants (filter them with
    ``is_active`` and ``holding``)."""
    return session.scalars(
        sa.select(Emergency)
        .where(
            Emergency.declared_at <= latest,
            sa.or_(Emergency.ended_at.is_(None), Emergency.ended_at > earliest),
        )
        .order_by(Emergency.id)
    ).all()


def emergencies_at(session: Session, lon: float, lat: float, *, now: datetime) -> list[Emergency]:
    """The active emergencies whose area holds the point: the bounding-box columns filter
    in SQL (both backends), shapely decides exactly."""
    candidates = session.scalars(
        sa.select(Emergency)
        .where(
            _active(now),
            Emergency.min_lon <= lon,
            Emergency.max_lon >= lon,
            Emergency.min_lat <= lat,
            Emergency.max_lat >= lat,
        )
        .order_by(Emergency.id)
    ).all()
    return holding(candidates, lon, lat)


def holding(emergencies: Sequence[Emergency], lon: float, lat: float) -> list[Emergency]:
    """Those of ``emergencies`` whose area holds the point (box first, then the shape)."""
    return [
        e
        for e in emergencies
        if e.min_lon <= lon <= e.max_lon
        and e.min_lat <= lat <= e.max_lat
        and contains_points(area_shape(e), [lon], [lat])[0]
    ]


def notice_stretch(
    session: Session,
    incident: Incident,
    *,
    now: datetime,
    around: Sequence[Emergency] | None = None,
) -> float:
    """How much later than usual a non-critical incident is expected: ``1 / factor`` of the
    strictest active emergency around it that does not cover its service, while it carries
    that emergency's service notice; 1.0 otherwise (and once the emergency has ended).
    ``around``: the active emergencies holding the incident, when the caller has them."""
    if incident.emergency_id is not None or not incident.service_notice:
        return 1.0
    if around is None:
        around = emergencies_at(session, incident.lon, incident.lat, now=now)
    return max(
        (1.0 / e.deadline_factor for e in around if incident.service_code not in e.service_codes),
        default=1.0,
    )


def incidents_to_attach(
    session: Session, *, box: BBox, service_codes: Sequence[str]
) -> Sequence[Incident]:
    """Open incidents of the services inside the box that belong to no emergency yet,
    locked until the transaction ends."""
    min_lon, min_lat, max_lon, max_lat = box
    return session.scalars(
        sa.select(Incident)
        .where(
            Incident.is_open.is_(True),
            Incident.emergency_id.is_(None),
            Incident.service_code.in_(sorted(service_codes)),
            Incident.lon.between(min_lon, max_lon),
            Incident.lat.between(min_lat, max_lat),
        )
        .order_by(Incident.id)
        .with_for_update()
    ).all()


def incident_counts(session: Session, emergency_ids: Sequence[int]) -> dict[int, int]:
    """How many incidents each emergency holds (its record)."""
    if not emergency_ids:
        return {}
    rows = session.execute(
        sa.select(Incident.emergency_id, sa.func.count())
        .where(Incident.emergency_id.in_(list(emergency_ids)))
        .group_by(Incident.emergency_id)
    ).all()
    return {int(e): int(n) for e, n in rows if e is not None}


def try_lock_batch_round(session: Session, emergency_id: int) -> bool:
    """Claim this emergency's batch round for the transaction; False when another
    scheduler holds it. PostGIS: a transaction advisory lock. SpatiaLite needs none: every
    write transaction already holds the database lock."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    key = zlib.crc32(f"emergency-batch:{emergency_id}".encode())
    return bool(session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(key))))
