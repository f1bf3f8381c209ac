"""A pending assignment made directly, not through dispatch: for tests that set the
tables up as they need them."""

from __future__ import annotations

from datetime import datetime

from fieldops.dispatch.models import Assignment, AssignmentStatus


def pending_assignment(incident_id: int, crew_id: int, now: datetime) -> Assignment:
    return Assignment(
        incident_id=incident_id,
        crew_id=crew_id,
        status=AssignmentStatus.PENDING,
        is_active=True,
        version=1,
        assigned_at=now,
        assigned_by="test",
        eta_s=60.0,
        travel_model="test",
        note="",
    )
