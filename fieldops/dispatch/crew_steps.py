"""A crew's own steps on its assignment: accept, en route, on scene, done, decline."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from fieldops.dispatch import repo
from fieldops.dispatch.models import Assignment, AssignmentStatus
from fieldops.dispatch.service import move_incident, refresh_crew_status
from fieldops.errors import Conflict, InvalidInput, NotFound
from fieldops.escalation.service import plan_incident
from fieldops.incidents.models import IncidentStatus
from fieldops.incidents.service import record_event

# What a crew may do to its assignment, from which step, and where it leads.
CREW_ACTIONS: dict[str, tuple[frozenset[AssignmentStatus], AssignmentStatus, IncidentStatus]] = {
    "accept": (
        frozenset({AssignmentStatus.PENDING}),
        AssignmentStatus.ACCEPTED,
        IncidentStatus.ACKNOWLEDGED,
    ),
    "en_route": (
        frozenset({AssignmentStatus.PENDING, AssignmentStatus.ACCEPTED}),
        AssignmentStatus.EN_ROUTE,
        IncidentStatus.EN_ROUTE,
    ),
    "on_scene": (
        frozenset({AssignmentStatus.ACCEPTED, AssignmentStatus.EN_ROUTE}),
        AssignmentStatus.ON_SCENE,
        IncidentStatus.ON_SCENE,
    ),
    "done": (
        frozenset({AssignmentStatus.ON_SCENE}),
        AssignmentStatus.DONE,
        IncidentStatus.RESOLVED,
    ),
    "decline": (
        frozenset({AssignmentStatus.PENDING, AssignmentStatus.ACCEPTED}),
        AssignmentStatus.DECLINED,
        IncidentStatus.OPEN,
    ),
}


def act_on_assignment(
    session: Session,
    assignment_id: int,
    *,
    crew_id: int,
    action: str,
    version: int | None,
    note: str,
    actor: str,
    now: datetime,
) -> Assignment:
    """A crew's step on its own assignment. Another crew's assignment is NotFound; an
    action sent against an assignment that changed since (``version``) or that is no
    longer the crew's is a Conflict that says what changed."""
    if action not in CREW_ACTIONS:
        raise InvalidInput.for_field("action", f"must be one of {', '.join(CREW_ACTIONS)}")
    # The assignment and its incident locked, and the crew read, in one statement.
    found = repo.lock_assignment_for_step(session, assignment_id)
    if found is None or found[0].crew_id != crew_id:
        raise NotFound(f"no assignment {assignment_id} for this crew")
    assignment, incident, crew = found
    allowed_from, step, incident_status = CREW_ACTIONS[action]
    if not assignment.is_active:
        raise Conflict(
            f"assignment {assignment_id} is {assignment.status} since "
            f"{assignment.finished_at:%Y-%m-%d %H:%M:%S}Z; your {action!r} was not applied"
            if assignment.finished_at
            else f"assignment {assignment_id} is {assignment.status}"
        )
    if version is not None and version != assignment.version:
        raise Conflict(
            f"assignment {assignment_id} changed since your version {version}: it is now "
            f"{assignment.status} (version {assignment.version}); your {action!r} was not applied"
        )
    if assignment.status not in allowed_from:
        raise Conflict(
            f"assignment {assignment_id} is {assignment.status}: {action!r} needs "
            f"{' or '.join(sorted(allowed_from))}"
        )
    if action == "decline" and not note.strip():
        raise InvalidInput.for_field("note", "a decline needs a reason")
    assignment.status = step
    assignment.version += 1
    if action == "accept":
        assignment.accepted_at = now
    elif action == "on_scene":
        assignment.arrived_at = now
    if action in {"done", "decline"}:
        assignment.is_active = False
        assignment.finished_at = now
    if note:
        assignment.note = note
    record_event(
        session,
        incident,
        kind="declined" if action == "decline" else f"crew_{action}",
        actor=actor,
        now=now,
        data={"assignment_id": assignment.id, "crew_id": crew_id, "note": note},
    )
    move_incident(session, incident, incident_status, actor=actor, now=now, note=note)
    session.flush()  # the session does not autoflush: the new step must be in the table
    refresh_crew_status(session, crew)
    plan_incident(session, incident, now=now)  # which flushes the crew's status too
    return assignment
