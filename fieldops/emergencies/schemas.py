"""Emergency shapes on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from fieldops.db.base import RowId

DEFAULT_NOTICE_EN = (
    "An emergency is under way in this area. Crews are busy with it, so this request "
    "will take longer than usual. Thank you for your patience."
)
DEFAULT_NOTICE_FR = (
    "Une situation d'urgence est en cours dans ce secteur. Les équipes y sont mobilisées : "
    "le traitement de cette demande prendra plus de temps que d'habitude. Merci de votre "
    "patience."
)

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class EmergencyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: Annotated[Text, StringConstraints(max_length=200)]
    hazard: Annotated[Text, StringConstraints(max_length=64)] = Field(
        description="flood, ice storm, heat wave, ..."
    )
    area: dict[str, Any] | None = Field(
        default=None,
        description="a GeoJSON Polygon or MultiPolygon in EPSG:4326 (give this or district_ids)",
    )
    district_ids: list[RowId] | None = Field(
        default=None, description="the area as whole districts (give this or area)"
    )
    service_codes: list[Text] = Field(
        min_length=1, description="the services the emergency covers (catalogue codes)"
    )
    deadline_factor: float = Field(
        default=0.5, gt=0, le=1, description="escalation windows are multiplied by this"
    )
    batch_every_s: int = Field(
        default=60, ge=0, le=86400, description="batch dispatch over the area this often; 0: off"
    )
    notice_en: Annotated[Text, StringConstraints(max_length=2000)] = DEFAULT_NOTICE_EN
    notice_fr: Annotated[Text, StringConstraints(max_length=2000)] = DEFAULT_NOTICE_FR


class EmergencyRead(BaseModel):
    id: int
    name: str
    hazard: str
    active: bool
    service_codes: list[str]
    deadline_factor: float
    batch_every_s: int
    notice_en: str
    notice_fr: str
    bbox: tuple[float, float, float, float] = Field(
        description="[min_lon, min_lat, max_lon, max_lat] of the area"
    )
    declared_at: datetime
    declared_by: str
    ended_at: datetime | None
    ended_by: str
    incident_count: int = Field(description="incidents attached to the emergency (its record)")


class EmergencyDetail(EmergencyRead):
    area: dict[str, Any] = Field(description="GeoJSON MultiPolygon, EPSG:4326")


class EmergencyDeclared(EmergencyDetail):
    attached_incident_ids: list[int] = Field(
        description="open incidents attached on declaring, their deadlines re-planned"
    )
