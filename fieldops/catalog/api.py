"""Service catalogue routes (public: what can be reported)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from fieldops.api.deps import ReadSession
from fieldops.catalog.repo import list_service_types

router = APIRouter(prefix="/api/v1", tags=["services"])


class ServiceTypeRead(BaseModel):
    code: str
    group: str
    name_en: str
    name_fr: str
    description_en: str
    description_fr: str
    default_priority: int
    skills: list[str]
    duplicate_radius_m: float
    duplicate_window_s: int
    resolve_sla_s: int
    coarsen_public_location: bool


@router.get("/services", response_model=list[ServiceTypeRead])
def get_services(session: ReadSession) -> list[ServiceTypeRead]:
    return [
        ServiceTypeRead.model_validate(s, from_attributes=True) for s in list_service_types(session)
    ]
