"""Emergency use cases: declare one over an area, end it, attach what intake opens inside
it, and batch-dispatch over its area on a schedule."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import shapely
from geoalchemy2.shape import from_shape
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry
from sqlalchemy.orm import Session

from fieldops.catalog.repo import list_service_types
from fieldops.db.base import SRID
from fieldops.dispatch.repo import unassigned_open_incidents
from fieldops.dispatch.service import TravelModel, batch_dispatch
from fieldops.districts.repo import district_shapes
from fieldops.emergencies import repo
from fieldops.emergencies.area import (
    as_multipolygon,
    bbox_of,
    contains_points,
    parse_area,
)
from fieldops.emergencies.models import Emergency
from fieldops.errors import Conflict, FieldProblem, InvalidInput, NotFound
from fieldops.escalation.service import plan_incident
from fieldops.incidents.models import Incident
from fieldops.incidents.service import EventRows, record_event


@dataclass(frozen=True)
class NewEmergency:
    """What a manager declares. Exactly one of ``area`` (GeoJSON) and ``district_ids``."""

    name: str
    hazard: str
    service_codes: Sequence[str]
    area: Mapping[str, Any] | None = None
    district_ids: Sequence[int] | None = None
    deadline_factor: float = 0.5
    batch_every_s: int = 60
    notice_en: str = ""
    notice_fr: str = ""


@dataclass(frozen=True)
class Declared:
    emergency: Emergency
    attached: list[int]  # ids of the open incidents attached (and re-planned) on declaring


def _area_from_districts(
    district_ids: Sequence[int], shapes: Mapping[int, BaseGeometry], problems: list[FieldProblem]
) -> MultiPolygon | None:
    if not district_ids:
        problems.append(FieldProblem("district_ids", "name at least one district"))
        return None
    unknown = sorted(set(district_ids) - set(shapes))
    if unknown:
        problems.append(
            FieldProblem("district_ids", f"no district with id {', '.join(map(str, unknown))}")
        )
        return None
    return as_multipolygon(shapely.union_all([shapes[i] for i in sorted(set(district_ids))]))


def declare_emergency(
    session: Session, new: NewEmergency, *, actor: str, now: datetime
) -> Declared:
    """Declare an emergency and attach every open incident of a covered service inside its
    area, re-planning each so its deadlines tighten by the factor (an ``emergency_attached``
    event each). Every input problem is reported at once. Flushes, never commits."""
    problems: list[FieldProblem] = []
    if new.area is None and new.district_ids is None:
        problems.append(FieldProblem("area", "give the area (GeoJSON) or district_ids"))
    elif new.area is not None and new.district_ids is not None:
        problems.append(FieldProblem("area", "give the area or district_ids, not both"))
    known = {s.code for s in list_service_types(session)}
    unknown = [c for c in dict.fromkeys(new.service_codes) if c not in known]
    if unknown:
        problems.append(
            FieldProblem("service_codes", f"no service {', '.join(repr(c) for c in unknown)}")
        )
    if not 0 < new.deadline_factor <= 1:
        problems.append(FieldProblem("deadline_factor", "must be above 0 and at most 1"))
    if new.batch_every_s < 0:
        problems.append(FieldProblem("batch_every_s", "must be 0 (off) or more"))
    shapes = {i: geom for i, _, geom in district_shapes(session)}
    area: MultiPolygon | None = None
    if new.area is not None and new.district_ids is None:
        try:
            area = parse_area(new.area, list(shapes.values()))
        except InvalidInput as exc:
            problems.extend(exc.problems)
    elif new.district_ids is not None and new.area is None:
        area = _area_from_districts(new.district_ids, shapes, problems)
    if problems:
        raise InvalidInput("; ".join(f"{p.field}: {p.reason}" for p in problems), problems)
    assert area is not None

    min_lon, min_lat, max_lon, max_lat = bbox_of(area)
    emergency = Emergency(
        name=new.name,
        hazard=new.hazard,
        area=from_shape(area, srid=SRID),
        area_digest=repo.area_digest(area),
        min_lon=min_lon,
        min_lat=min_lat,
        max_lon=max_lon,
        max_lat=max_lat,
        service_codes=sorted(set(new.service_codes)),
        deadline_factor=new.deadline_factor,
        batch_every_s=new.batch_every_s,
        notice_en=new.notice_en,
        notice_fr=new.notice_fr,
        declared_at=now,
        declared_by=actor,
        ended_at=None,
        ended_by="",
    )
    session.add(emergency)
    session.flush()

    candidates = repo.incidents_to_attach(
        session, box=bbox_of(area), service_codes=emergency.service_codes
    )
    inside = contains_points(area, [i.lon for i in candidates], [i.lat for i in candidates])
    attached = []
    for incident, is_inside in zip(candidates, inside, strict=True):
        if is_inside:
            _attach(session, incident, emergency, actor=actor, now=now)
            plan_incident(session, incident, now=now)
            attached.append(incident.id)
    session.flush()
    return Declared(emergency, attached)


def _attach(
    session: Session,
    incident: Incident,
    emergency: Emergency,
    *,
    actor: str,
    now: datetime,
    rows: EventRows | None = None,
) -> None:
    incident.emergency_id = emergency.id
    record_event(
        session,
        incident,
        kind="emergency_attached",
        actor=actor,
        now=now,
        data={
            "emergency_id": emergency.id,
            "name": emergency.name,
            "deadline_factor": emergency.deadline_factor,
        },
        rows=rows,
    )


def end_emergency(session: Session, emergency_id: int, *, actor: str, now: datetime) -> Emergency:
    """End an active emergency. Its incidents keep their ``emergency_id`` (the record);
    incidents opened from now on follow the normal rules. Ending twice is a Conflict."""
    emergency = repo.get_emergency(session, emergency_id, lock=True)
    if emergency is None:
        raise NotFound(f"no emergency with id {emergency_id}")
    if emergency.ended_at is not None:
        raise Conflict(
            f"emergency {emergency_id} already ended at {emergency.ended_at:%Y-%m-%d %H:%M:%S}Z"
            f" (by {emergency.ended_by})"
        )
    emergency.ended_at = now
    emergency.ended_by = actor
    session.flush()
    return emergency


def attach_to_emergency(
    session: Session,
    incident: Incident,
    *,
    actor: str,
    now: datetime,
    around: Sequence[Emergency] | None = None,
    rows: EventRows | None = None,
) -> Emergency | None:
    """Intake's hook for an incident it has just opened, before its deadlines are planned.

    Inside an active emergency that covers its service, the incident joins it (the
    strictest factor wins where areas overlap; the planner then tightens its deadlines).
    Inside one that does not, it gets the emergency's service notice (English; the French
    stays on the map), shown by Open311. Returns the emergency concerned, if any.
    ``around``: the active emergencies holding the incident, when the caller has them;
    ``rows``: where its event goes, when given (see ``record_event``)."""
    if around is None:
        around = repo.emergencies_at(session, incident.lon, incident.lat, now=now)
    if not around:
        return None
    covering = [e for e in around if incident.service_code in e.service_codes]
    if covering:
        emergency = min(covering, key=lambda e: (e.deadline_factor, -e.id))
        _attach(session, incident, emergency, actor=actor, now=now, rows=rows)
        return emergency
    emergency = max(around, key=lambda e: e.id)  # the latest declared speaks
    incident.service_notice = emergency.notice_en
    record_event(
        session,
        incident,
        kind="emergency_notice",
        actor=actor,
        now=now,
        data={"emergency_id": emergency.id, "name": emergency.name},
        rows=rows,
    )
    return emergency


def due_for_batch(
    session: Session, *, now: datetime, last_run: MutableMapping[int, datetime]
) -> list[int]:
    """Active emergencies with batch dispatch on whose last round (``last_run``) is at least
    ``batch_every_s`` old, or that never ran. Forgets ended emergencies in ``last_run``."""
    active = [e for e in repo.active_emergencies(session, now=now) if e.batch_every_s > 0]
    for gone in set(last_run) - {e.id for e in active}:
        del last_run[gone]
    return [
        e.id
        for e in active
        if e.id not in last_run or now - last_run[e.id] >= timedelta(seconds=e.batch_every_s)
    ]


@dataclass(frozen=True)
class BatchRound:
    emergency_id: int
    assigned: list[int] = field(default_factory=list)  # incident ids given a crew
    waiting: list[int] = field(default_factory=list)  # inside the area, still without one
    skipped: str = ""  # why nothing ran, when nothing did


def run_batch_round(
    session: Session,
    emergency_id: int,
    *,
    now: datetime,
    travel: TravelModel,
    stale_after: timedelta,
) -> BatchRound:
    """One batch-dispatch round over the emergency's area: every unassigned open incident
    inside it gets the optimal crew at once; nothing outside the area is touched (the
    round is given the inside incidents by id: a concave or multi-part area's box holds
    incidents outside it). Flushes, never commits."""
    emergency = repo.get_emergency(session, emergency_id)
    if emergency is None or not repo.is_active(emergency, now=now):
        return BatchRound(emergency_id, skipped="not active")
    if not repo.try_lock_batch_round(session, emergency_id):
        return BatchRound(emergency_id, skipped="another scheduler is running this round")
    area = repo.area_shape(emergency)
    candidates = unassigned_open_incidents(session, bbox=repo.bbox(emergency))
    inside_mask = contains_points(area, [i.lon for i in candidates], [i.lat for i in candidates])
    inside = [i for i, m in zip(candidates, inside_mask, strict=True) if m]
    if not inside:
        return BatchRound(emergency_id)
    result = batch_dispatch(
        session,
        actor=f"scheduler:emergency-{emergency_id}",
        now=now,
        travel=travel,
        stale_after=stale_after,
        incident_ids=[i.id for i in inside],
        baseline=False,
    )
    done = {a.incident_id for a in result.assignments}
    return BatchRound(
        emergency_id,
        assigned=sorted(done),
        waiting=[i.id for i in inside if i.id not in done],
    )
