"""Emergency routes: managers declare and end; staff list, read and map them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from shapely.geometry import mapping
from sqlalchemy.orm import Session

from fieldops.api.deps import DbSession, Now, ReadSession, Staff, require_roles
from fieldops.api.idempotent import answer, write_once
from fieldops.api.responses import GeoJSONBody
from fieldops.auth.models import Role
from fieldops.auth.service import Principal
from fieldops.db.base import RowId
from fieldops.emergencies import repo, service
from fieldops.emergencies.models import Emergency
from fieldops.emergencies.schemas import (
    EmergencyCreate,
    EmergencyDeclared,
    EmergencyDetail,
    EmergencyRead,
)
from fieldops.errors import NotFound
from fieldops.idempotency.service import fingerprint

router = APIRouter(prefix="/api/v1", tags=["emergencies"])

Manager = Annotated[Principal, Depends(require_roles(Role.MANAGER))]


def _fields(emergency: Emergency, *, now: datetime, incident_count: int) -> dict[str, Any]:
    return {
        "id": emergency.id,
        "name": emergency.name,
        "hazard": emergency.hazard,
        "active": repo.is_active(emergency, now=now),
        "service_codes": list(emergency.service_codes),
        "deadline_factor": emergency.deadline_factor,
        "batch_every_s": emergency.batch_every_s,
        "notice_en": emergency.notice_en,
        "notice_fr": emergency.notice_fr,
        "bbox": repo.bbox(emergency),
        "declared_at": emergency.declared_at,
        "declared_by": emergency.declared_by,
        "ended_at": emergency.ended_at,
        "ended_by": emergency.ended_by,
        "incident_count": incident_count,
    }


def _detail(session: Session, emergency: Emergency, *, now: datetime) -> EmergencyDetail:
    count = repo.incident_counts(session, [emergency.id]).get(emergency.id, 0)
    return EmergencyDetail(
        **_fields(emergency, now=now, incident_count=count),
        area=dict(mapping(repo.area_shape(emergency))),
    )


@router.post("/emergencies", status_code=201, response_model=EmergencyDeclared)
def post_emergency(
    body: EmergencyCreate,
    request: Request,
    session: DbSession,
    manager: Manager,
    now: Now,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Any:
    """Declare an emergency over an area (GeoJSON polygon) or whole districts. Open incidents
    of the covered services inside are attached at once and their deadlines tightened;
    from then on intake attaches new ones. Send an ``Idempotency-Key`` to make retries safe."""

    def work() -> tuple[int, Any]:
        declared = service.declare_emergency(
            session,
            service.NewEmergency(
                name=body.name,
                hazard=body.hazard,
                area=body.area,
                district_ids=body.district_ids,
                service_codes=body.service_codes,
                deadline_factor=body.deadline_factor,
                batch_every_s=body.batch_every_s,
                notice_en=body.notice_en,
                notice_fr=body.notice_fr,
            ),
            actor=manager.actor,
            now=now,
        )
        detail = _detail(session, declared.emergency, now=now)
        result = EmergencyDeclared(**detail.model_dump(), attached_incident_ids=declared.attached)
        return 201, result.model_dump(mode="json")

    done = write_once(
        session,
        principal=manager,
        key=idempotency_key,
        fingerprint=fingerprint("POST", request.url.path, body.model_dump(mode="json")),
        now=now,
        work=work,
    )
    return answer(done)


@router.post("/emergencies/{emergency_id}/end", response_model=EmergencyDetail)
def post_end(
    emergency_id: RowId, session: DbSession, manager: Manager, now: Now
) -> EmergencyDetail:
    """End the emergency: new incidents follow the normal rules again; its incidents keep
    their link to it (the record). Ending an ended emergency is 409."""
    emergency = service.end_emergency(session, emergency_id, actor=manager.actor, now=now)
    result = _detail(session, emergency, now=now)
    session.commit()
    return result


def _listed(
    session: Session, active: bool | None, now: datetime
) -> tuple[Sequence[Emergency], dict[int, int]]:
    rows = repo.list_emergencies(session, active=active, now=now)
    return rows, repo.incident_counts(session, [e.id for e in rows])


@router.get("/emergencies", response_model=list[EmergencyRead])
def get_emergencies(
    session: ReadSession, _staff: Staff, now: Now, active: bool | None = None
) -> list[EmergencyRead]:
    """Every emergency, newest first (``active=true``: only those in force now)."""
    rows, counts = _listed(session, active, now)
    return [EmergencyRead(**_fields(e, now=now, incident_count=counts.get(e.id, 0))) for e in rows]


@router.get("/emergencies.geojson")
def get_emergencies_geojson(
    session: ReadSession, _staff: Staff, now: Now, active: bool | None = None
) -> GeoJSONBody:
    """The emergency areas as a GeoJSON FeatureCollection (EPSG:4326), for the map; each
    feature carries both notices, English and French."""
    rows, counts = _listed(session, active, now)
    features = []
    for e in rows:
        properties = EmergencyRead(
            **_fields(e, now=now, incident_count=counts.get(e.id, 0))
        ).model_dump(mode="json", exclude={"id"})
        features.append(
            {
                "type": "Feature",
                "id": e.id,
                "geometry": mapping(repo.area_shape(e)),
                "properties": properties,
            }
        )
    return GeoJSONBody({"type": "FeatureCollection", "features": features})


@router.get("/emergencies/{emergency_id}", response_model=EmergencyDetail)
def get_emergency(
    emergency_id: RowId, session: ReadSession, _staff: Staff, now: Now
) -> EmergencyDetail:
    emergency = repo.get_emergency(session, emergency_id)
    if emergency is None:
        raise NotFound(f"no emergency with id {emergency_id}")
    return _detail(session, emergency, now=now)
