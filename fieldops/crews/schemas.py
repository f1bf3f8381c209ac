"""Crew shapes on the wire."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class CrewRead(BaseModel):
    id: int
    name: str
    skills: list[str]
    capacity: int
    active_jobs: int
    home_district_id: int
    status: str
    shift_starts_at: datetime
    shift_ends_at: datetime
    lon: float = Field(description="last fix, else the depot")
    lat: float
    last_fix_at: datetime | None
    position_stale: bool = Field(description="no fix, or older than the stale age")


class FixIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    fix_at: AwareDatetime = Field(description="the device's own time of the fix")


class FixesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fixes: list[FixIn] = Field(min_length=1, max_length=5000)


class FixesRead(BaseModel):
    stored: int
    repeated: int
    moved: bool
