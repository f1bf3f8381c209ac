"""Escalation routes: why did (or didn't) this escalate, and snoozing."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from fieldops.api.deps import DbSession, Now, ReadSession, Staff
from fieldops.db.base import RowId
from fieldops.errors import InvalidInput, NotFound
from fieldops.escalation import repo, service
from fieldops.incidents.repo import get_incident, lock_incident
from fieldops.incidents.service import record_event

router = APIRouter(prefix="/api/v1", tags=["escalation"])


class StepRead(BaseModel):
    key: str
    deadline: str
    action: str
    deadline_at: datetime
    due_at: datetime
    status: str
    reason: str
    planned_at: datetime
    settled_at: datetime | None


class EscalationTrace(BaseModel):
    incident_id: int
    dispatch_due_at: datetime | None
    acknowledge_due_at: datetime | None
    arrive_due_at: datetime | None
    resolve_due_at: datetime | None
    snoozed_until: datetime | None
    steps: list[StepRead]


class SnoozeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    minutes: int = Field(ge=1, le=24 * 60)
    note: str = Field(default="", max_length=500)


@router.get("/incidents/{incident_id}/escalations", response_model=EscalationTrace)
def get_escalations(incident_id: RowId, session: ReadSession, _staff: Staff) -> EscalationTrace:
    """Every planned, fired, cancelled and skipped step with its deadline and reason."""
    incident = get_incident(session, incident_id)
    if incident is None:
        raise NotFound(f"no incident with id {incident_id}")
    return EscalationTrace(
        incident_id=incident.id,
        dispatch_due_at=incident.dispatch_due_at,
        acknowledge_due_at=incident.acknowledge_due_at,
        arrive_due_at=incident.arrive_due_at,
        resolve_due_at=incident.resolve_due_at,
        snoozed_until=incident.snoozed_until,
        steps=[
            StepRead.model_validate(s, from_attributes=True)
            for s in repo.steps_of(session, incident_id)
        ],
    )


@router.post("/incidents/{incident_id}/snooze", response_model=EscalationTrace)
def post_snooze(
    incident_id: RowId, body: SnoozeRequest, session: DbSession, staff: Staff, now: Now
) -> EscalationTrace:
    """Hold the incident's escalation steps for a while (they are moved, not dropped)."""
    incident = lock_incident(session, incident_id)
    if incident is None:
        raise NotFound(f"no incident with id {incident_id}")
    if not incident.is_open:
        raise InvalidInput.for_field("incident", "a closed incident has nothing to snooze")
    until = now + timedelta(minutes=body.minutes)
    moved = service.snooze(session, incident, until=until, actor=staff.actor, now=now)
    record_event(
        session,
        incident,
        kind="snoozed",
        actor=staff.actor,
        now=now,
        data={"until": until.isoformat(), "steps_moved": moved, "note": body.note},
    )
    session.commit()
    return get_escalations(incident_id, session, staff)
