"""Incident shapes on the wire (dispatcher API)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from fieldops.incidents.models import IncidentStatus
from fieldops.intake.schemas import MAX_DESCRIPTION_CHARS


class IncidentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    service_code: str = Field(min_length=1, max_length=64)
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    description: str = Field(default="", max_length=MAX_DESCRIPTION_CHARS)
    address: str = Field(default="", max_length=500)
    priority: int | None = Field(default=None, ge=1, le=5)
    requested_at: AwareDatetime | None = None

    @field_validator("lat", "lon")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class IncidentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: IncidentStatus | None = None
    priority: int | None = Field(default=None, ge=1, le=5)
    note: str | None = Field(default=None, max_length=2000)


class DistrictRef(BaseModel):
    id: int
    name: str


class IncidentRead(BaseModel):
    id: int
    service_code: str
    service_group: str
    status: IncidentStatus
    priority: int
    district: DistrictRef
    lon: float
    lat: float
    address: str
    description: str
    report_count: int
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None
    first_report_at: datetime
    last_report_at: datetime


class ReportRead(BaseModel):
    """A report as staff see it, reporter contact details included."""

    id: str
    channel: str
    service_code: str
    lon: float
    lat: float
    address: str
    description: str
    media_url: str
    requested_at: datetime
    received_at: datetime
    reporter_first_name: str
    reporter_last_name: str
    reporter_email: str
    reporter_phone: str


class EventRead(BaseModel):
    id: int
    at: datetime
    actor: str
    kind: str
    data: dict[str, Any]


class IncidentDetail(IncidentRead):
    reports: list[ReportRead]
    events: list[EventRead]


class IntakeResult(BaseModel):
    incident: IncidentRead
    report_id: str
    merged: bool = Field(description="true when the report joined an open incident nearby")


class IncidentPage(BaseModel):
    items: list[IncidentRead]
    next_after_id: int | None = Field(description="pass as after_id for the next page")
