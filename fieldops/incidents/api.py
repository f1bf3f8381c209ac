"""Dispatcher routes for incidents: create through intake, list, read, change, GeoJSON feed."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request

from fieldops.api.deps import DbSession, Now, ReadSession, Staff, State
from fieldops.api.idempotent import answer
from fieldops.api.intake import take_in
from fieldops.api.responses import GeoJSONBody
from fieldops.db.base import ROW_ID_MAX, RowId
from fieldops.dispatch.service import withdraw_crews
from fieldops.errors import InvalidInput, NotFound
from fieldops.idempotency.service import fingerprint
from fieldops.incidents import repo
from fieldops.incidents.models import Channel, Incident, IncidentStatus
from fieldops.incidents.schemas import (
    DistrictRef,
    EventRead,
    IncidentCreate,
    IncidentDetail,
    IncidentPage,
    IncidentRead,
    IncidentUpdate,
    IntakeResult,
    ReportRead,
)
from fieldops.incidents.service import IncidentChange, update_incident
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import IntakeOutcome

router = APIRouter(prefix="/api/v1", tags=["incidents"])
# POST incidents alone, so that the app finds its busiest route first (fieldops.api.router).
intake = APIRouter(prefix="/api/v1", tags=["incidents"])

MAX_PAGE = 5000


def incident_read(incident: Incident, district_names: dict[int, str]) -> IncidentRead:
    return IncidentRead(
        id=incident.id,
        service_code=incident.service_code,
        service_group=incident.service_group,
        status=IncidentStatus(incident.status),
        priority=incident.priority,
        district=DistrictRef(
            id=incident.district_id, name=district_names.get(incident.district_id, "")
        ),
        lon=incident.lon,
        lat=incident.lat,
        address=incident.address,
        description=incident.description,
        report_count=incident.report_count,
        opened_at=incident.opened_at,
        updated_at=incident.updated_at,
        closed_at=incident.closed_at,
        first_report_at=incident.first_report_at,
        last_report_at=incident.last_report_at,
    )


@intake.post("/incidents", status_code=201, response_model=IntakeResult)
async def create_incident(
    body: IncidentCreate,
    request: Request,
    state: State,
    principal: Staff,
    now: Now,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    """Report an incident as a dispatcher. It goes through the same intake as Open311, so a
    report near an open incident of the same group joins it (``merged: true``).

    Send an ``Idempotency-Key`` header to make retries safe: the same key and body
    return the first answer and create nothing new.
    """
    context = await state.intake_context_async()
    new = NewReport(
        service_code=body.service_code,
        lon=body.lon,
        lat=body.lat,
        channel=Channel.DISPATCHER,
        description=body.description,
        address=body.address,
        priority=body.priority,
        requested_at=body.requested_at,
    )

    def result(outcome: IntakeOutcome) -> tuple[int, Any]:
        done = IntakeResult(
            incident=incident_read(outcome.incident, context.district_names),
            report_id=str(outcome.report.id),
            merged=outcome.merged,
        )
        return 201, done.model_dump(mode="json")

    done = await take_in(
        state,
        new,
        principal=principal,
        now=now,
        idempotency_key=idempotency_key,
        fingerprint=lambda: fingerprint("POST", request.url.path, body.model_dump(mode="json")),
        answer_of=result,
    )
    return answer(done)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def parse_filter(
    status: str | None,
    district: str | None,
    service: str | None,
    bbox: str | None,
    since: datetime | None,
    after_id: int,
    limit: int,
) -> repo.IncidentFilter:
    """Turn query parameters into a filter; raises InvalidInput naming the parameter."""
    try:
        statuses = frozenset(IncidentStatus(s) for s in _csv(status))
    except ValueError:
        raise InvalidInput.for_field(
            "status", f"each value must be one of {', '.join(IncidentStatus)}"
        ) from None
    try:
        district_ids = frozenset(int(d) for d in _csv(district))
        if any(abs(d) > ROW_ID_MAX for d in district_ids):
            raise ValueError(district)
    except ValueError:
        raise InvalidInput.for_field("district", "must be district ids, comma-separated") from None
    box = None
    if bbox:
        try:
            parts = [float(v) for v in bbox.split(",")]
        except ValueError:
            parts = []
        if len(parts) != 4 or not (parts[0] <= parts[2] and parts[1] <= parts[3]):
            raise InvalidInput.for_field(
                "bbox", "must be min_lon,min_lat,max_lon,max_lat with min <= max"
            )
        box = (parts[0], parts[1], parts[2], parts[3])
    if since is not None and since.tzinfo is None:
        raise InvalidInput.for_field("since", "must carry a time zone (e.g. Z or +00:00)")
    return repo.IncidentFilter(
        statuses=statuses,
        district_ids=district_ids,
        service_codes=frozenset(_csv(service)),
        bbox=box,
        updated_since=since,
        after_id=after_id,
        limit=limit,
    )


def _filters(
    status: Annotated[str | None, Query(description="comma-separated statuses")] = None,
    district: Annotated[str | None, Query(description="comma-separated district ids")] = None,
    service: Annotated[str | None, Query(description="comma-separated service codes")] = None,
    bbox: Annotated[str | None, Query(description="min_lon,min_lat,max_lon,max_lat")] = None,
    since: Annotated[datetime | None, Query(description="updated at or after")] = None,
    after_id: Annotated[int, Query(ge=0, le=ROW_ID_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 500,
) -> repo.IncidentFilter:
    return parse_filter(status, district, service, bbox, since, after_id, limit)


@router.get("/incidents", response_model=IncidentPage)
def list_incidents(
    session: ReadSession,
    state: State,
    _principal: Staff,
    filters: Annotated[repo.IncidentFilter, Depends(_filters)],
) -> IncidentPage:
    """Incidents matching every filter given, oldest first; page with ``after_id``."""
    rows = repo.list_incidents(session, filters)
    names = state.intake_context().district_names
    return IncidentPage(
        items=[incident_read(i, names) for i in rows],
        next_after_id=rows[-1].id if len(rows) == filters.limit else None,
    )


Filters = Annotated[repo.IncidentFilter, Depends(_filters)]


@router.get("/incidents.geojson")
def incidents_geojson(
    session: ReadSession, state: State, _principal: Staff, filters: Filters
) -> GeoJSONBody:
    """The same incidents as a GeoJSON FeatureCollection (EPSG:4326), for maps and GIS."""
    rows = repo.list_incidents(session, filters)
    names = state.intake_context().district_names
    features = []
    for incident in rows:
        props = incident_read(incident, names).model_dump(mode="json")
        props["district_name"] = props.pop("district")["name"]
        features.append(
            {
                "type": "Feature",
                "id": incident.id,
                "geometry": {"type": "Point", "coordinates": [incident.lon, incident.lat]},
                "properties": props,
            }
        )
    return GeoJSONBody({"type": "FeatureCollection", "features": features})


@router.get("/incidents/{incident_id}", response_model=IncidentDetail)
def get_incident(
    incident_id: RowId, session: ReadSession, state: State, _principal: Staff
) -> IncidentDetail:
    """One incident with every report merged into it and its recent events (newest first)."""
    incident = repo.get_incident(session, incident_id, with_reports=True)
    if incident is None:
        raise NotFound(f"no incident with id {incident_id}")
    names = state.intake_context().district_names
    return IncidentDetail(
        **incident_read(incident, names).model_dump(),
        reports=[
            ReportRead(
                id=str(r.id),
                channel=r.channel,
                service_code=r.service_code,
                lon=r.lon,
                lat=r.lat,
                address=r.address,
                description=r.description,
                media_url=r.media_url,
                requested_at=r.requested_at,
                received_at=r.received_at,
                reporter_first_name=r.reporter_first_name,
                reporter_last_name=r.reporter_last_name,
                reporter_email=r.reporter_email,
                reporter_phone=r.reporter_phone,
            )
            for r in incident.reports
        ],
        events=[
            EventRead(id=e.id, at=e.at, actor=e.actor, kind=e.kind, data=e.data)
            for e in repo.list_events(session, incident_id)
        ],
    )


@router.patch("/incidents/{incident_id}", response_model=IncidentRead)
def patch_incident(
    incident_id: RowId,
    body: IncidentUpdate,
    session: DbSession,
    state: State,
    principal: Staff,
    now: Now,
) -> IncidentRead:
    """Change status (following the lifecycle) and/or priority; each change is logged."""
    if body.status is None and body.priority is None:
        raise InvalidInput.for_field("body", "give status and/or priority")
    incident = update_incident(
        session,
        incident_id,
        IncidentChange(status=body.status, priority=body.priority, note=body.note),
        actor=principal.actor,
        now=now,
    )
    if not incident.is_open or incident.status == IncidentStatus.OPEN:
        # Closed, or sent back to the queue: no crew stays on it.
        withdraw_crews(session, incident, actor=principal.actor, now=now)
    result = incident_read(incident, state.intake_context().district_names)
    session.commit()
    return result
