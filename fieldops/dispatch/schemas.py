"""Dispatch shapes on the wire."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from fieldops.db.base import RowId


class RecommendationRead(BaseModel):
    crew_id: int
    name: str
    score_s: float = Field(description="effective response time; lower is better")
    eta_s: float
    travel_model: str = Field(description="road or straight_line")
    reason: str
    position_stale: bool


class Recommendations(BaseModel):
    incident_id: int
    items: list[RecommendationRead]


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crew_id: RowId


class AssignmentRead(BaseModel):
    id: int
    incident_id: int
    crew_id: int
    status: str
    version: int
    assigned_at: datetime
    assigned_by: str
    eta_s: float
    travel_model: str
    accepted_at: datetime | None
    arrived_at: datetime | None
    finished_at: datetime | None
    note: str


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    district_ids: list[RowId] = Field(default_factory=list, description="only these districts")
    bbox: tuple[float, float, float, float] | None = Field(
        default=None, description="only inside [min_lon, min_lat, max_lon, max_lat]"
    )


class BatchItem(BaseModel):
    incident_id: int
    crew_id: int
    assignment_id: int
    eta_s: float
    slot: int = Field(description="0: the crew's next job; k: after k others of this batch")


class BatchResponse(BaseModel):
    assignments: list[BatchItem]
    unassigned: list[int]
    weighted_response_s: float
    greedy_weighted_response_s: float = Field(
        description="what closest-free-crew-first would have given for the same incidents"
    )
    objective: float
    greedy_objective: float


class CrewAction(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(
        default=None, description="the assignment version the device last saw (409 if changed)"
    )
    note: str = Field(default="", max_length=2000)


class CrewAssignment(AssignmentRead):
    service_code: str
    priority: int
    lon: float
    lat: float
    address: str
    description: str


class ShiftStopRead(BaseModel):
    assignment_id: int
    incident_id: int
    arrive_at: datetime
    travel_s: int


class ShiftPlanRead(BaseModel):
    crew_id: int
    stops: list[ShiftStopRead]
    unplanned: list[int]
    travel_s: int
