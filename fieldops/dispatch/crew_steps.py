"""A crew's own steps on its assignment: accept, en route, on scene, done, decline.

One step (the crew app's button) and many at once (a crew app coming back online with the
steps it queued, a drill's crews within a scheduler tick) take the same path:
``act_on_assignments`` checks each step against what the steps before it left, and writes
the whole batch with a handful of statements (one lock for every assignment, incident and
crew; one flush; one query for the crews' statuses; one planning pass), leaving what the
steps one after the other would have left.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from fieldops.crews.models import Crew
from fieldops.dispatch import repo
from fieldops.dispatch.models import Assignment, AssignmentStatus
from fieldops.dispatch.service import move_incident, refresh_crew_statuses
from fieldops.errors import Conflict, FieldOpsError, InvalidInput, NotFound
from fieldops.escalation.service import plan_incidents
from fieldops.incidents.models import Incident, IncidentStatus
from fieldops.incidents.service import (
    EventRows,
    check_status_change,
    record_event,
    write_events,
)

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

# Steps that end the assignment (the crew holds one job fewer afterwards).
ENDING = frozenset({"done", "decline"})


@dataclass(frozen=True)
class CrewStep:
    """One step a crew took: ``at`` is when, ``version`` the assignment version it saw
    (None: whatever it is now), ``actor`` who to log (default ``crew:<id>``)."""

    assignment_id: int
    crew_id: int
    action: str
    at: datetime
    note: str = ""
    version: int | None = None
    actor: str | None = None


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
    step = CrewStep(assignment_id, crew_id, action, now, note=note, version=version, actor=actor)
    (outcome,) = act_on_assignments(session, [step])
    if isinstance(outcome, FieldOpsError):
        raise outcome
    return outcome


def act_on_assignments(
    session: Session, steps: Sequence[CrewStep]
) -> list[Assignment | FieldOpsError]:
    """Crews' steps in order: each outcome is the assignment as the step left it, or the
    error that refused the step (a refused step changes nothing; the others go on)."""
    found = repo.lock_assignments_for_steps(session, [s.assignment_id for s in steps])
    outcomes: list[Assignment | FieldOpsError] = []
    for part in _rounds(steps, found):
        outcomes += _apply(session, part, found)
    return outcomes


def _rounds(
    steps: Sequence[CrewStep], found: dict[int, tuple[Assignment, Incident, Crew]]
) -> Iterator[list[CrewStep]]:
    """The steps cut into runs in which no incident changes at two different instants, so
    that planning each incident once per run, as of its step, is what planning it after
    every step would have left."""
    part: list[CrewStep] = []
    at: dict[int, datetime] = {}
    for step in steps:
        row = found.get(step.assignment_id)
        incident_id = row[1].id if row is not None else None
        if incident_id is not None and at.setdefault(incident_id, step.at) != step.at:
            yield part
            part, at = [], {incident_id: step.at}
        part.append(step)
    if part:
        yield part


def _apply(
    session: Session,
    steps: Sequence[CrewStep],
    found: dict[int, tuple[Assignment, Incident, Crew]],
) -> list[Assignment | FieldOpsError]:
    outcomes: list[Assignment | FieldOpsError] = []
    changed: dict[int, Incident] = {}
    changed_at: dict[int, datetime] = {}
    crews: dict[int, Crew] = {}
    log: EventRows = []
    for step in steps:
        try:
            assignment, incident, crew = _step(session, step, found.get(step.assignment_id), log)
        except FieldOpsError as exc:
            outcomes.append(exc)
            continue
        outcomes.append(assignment)
        changed[incident.id] = incident
        changed_at[incident.id] = step.at
        crews[crew.id] = crew
    if changed:
        # The session does not autoflush: the crews' statuses are read after the steps
        # are in the table, and planning flushes what it and they changed. The log goes
        # in with one statement.
        write_events(session, log)
        refresh_crew_statuses(session, list(crews.values()))
        plan_incidents(
            session, list(changed.values()), now=max(changed_at.values()), changed_at=changed_at
        )
    return outcomes


def _step(
    session: Session,
    step: CrewStep,
    row: tuple[Assignment, Incident, Crew] | None,
    log: EventRows,
) -> tuple[Assignment, Incident, Crew]:
    """Check one step against the assignment as the steps before it left it, and apply it
    to the objects (written when the caller flushes); its events go to ``log``."""
    if step.action not in CREW_ACTIONS:
        raise InvalidInput.for_field("action", f"must be one of {', '.join(CREW_ACTIONS)}")
    if row is None or row[0].crew_id != step.crew_id:
        raise NotFound(f"no assignment {step.assignment_id} for this crew")
    assignment, incident, crew = row
    action, note, now = step.action, step.note, step.at
    allowed_from, moved_to, incident_status = CREW_ACTIONS[action]
    if not assignment.is_active:
        raise Conflict(
            f"assignment {assignment.id} is {assignment.status} since "
            f"{assignment.finished_at:%Y-%m-%d %H:%M:%S}Z; your {action!r} was not applied"
            if assignment.finished_at
            else f"assignment {assignment.id} is {assignment.status}"
        )
    if step.version is not None and step.version != assignment.version:
        raise Conflict(
            f"assignment {assignment.id} changed since your version {step.version}: it is "
            f"now {assignment.status} (version {assignment.version}); your {action!r} was "
            "not applied"
        )
    if assignment.status not in allowed_from:
        raise Conflict(
            f"assignment {assignment.id} is {assignment.status}: {action!r} needs "
            f"{' or '.join(sorted(allowed_from))}"
        )
    if action == "decline" and not note.strip():
        raise InvalidInput.for_field("note", "a decline needs a reason")
    # Every check before the first change: a refused step leaves the objects as they were.
    check_status_change(incident, incident_status)
    actor = step.actor or f"crew:{step.crew_id}"
    assignment.status = moved_to
    assignment.version += 1
    if action == "accept":
        assignment.accepted_at = now
    elif action == "on_scene":
        assignment.arrived_at = now
    if action in ENDING:
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
        data={"assignment_id": assignment.id, "crew_id": step.crew_id, "note": note},
        rows=log,
    )
    move_incident(session, incident, incident_status, actor=actor, now=now, note=note, rows=log)
    return assignment, incident, crew
