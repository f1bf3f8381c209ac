"""Dispatch use cases: recommend, assign, batch-assign and withdraw (the crew's own steps are
in ``crew_steps``, its shift route in ``shifts``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike
from sqlalchemy.orm import Session

from fieldops.catalog.repo import list_service_types
from fieldops.crews.models import Crew, CrewStatus
from fieldops.crews.repo import crew_rows, get_crew
from fieldops.dispatch import repo
from fieldops.dispatch.batch import BatchIncident, BatchPlan, assign_greedy, assign_optimal
from fieldops.dispatch.models import Assignment, AssignmentStatus
from fieldops.dispatch.ranking import CrewState, Recommendation, rank_crews
from fieldops.errors import Conflict, InvalidInput, NotFound
from fieldops.escalation.service import plan_incident, plan_incidents
from fieldops.geo.routing import Travel
from fieldops.incidents.models import Incident, IncidentStatus
from fieldops.incidents.repo import get_incident, lock_incident
from fieldops.incidents.service import change_status, record_event


class TravelModel(Protocol):
    def travel_matrix(
        self, from_lon: ArrayLike, from_lat: ArrayLike, to_lon: ArrayLike, to_lat: ArrayLike
    ) -> list[Travel]: ...

    def travel_to(
        self, lon: float, lat: float, from_lon: ArrayLike, from_lat: ArrayLike
    ) -> Travel: ...


def crew_position(crew: Crew) -> tuple[float, float]:
    """Where the crew is believed to be: its last fix, else its depot."""
    if crew.last_lon is not None and crew.last_lat is not None:
        return crew.last_lon, crew.last_lat
    return crew.depot_lon, crew.depot_lat


def is_stale(crew: Crew, *, now: datetime, stale_after: timedelta) -> bool:
    return crew.last_fix_at is None or now - crew.last_fix_at > stale_after


def crew_state(crew: Crew, *, active_jobs: int, now: datetime, stale_after: timedelta) -> CrewState:
    """What ranking needs of one crew that holds ``active_jobs`` active assignments."""
    lon, lat = crew_position(crew)
    return CrewState(
        crew_id=crew.id,
        name=crew.name,
        skills=frozenset(crew.skills),
        capacity=crew.capacity,
        active_jobs=active_jobs,
        home_district_id=crew.home_district_id,
        on_duty=crew.status != CrewStatus.OFF_DUTY,
        shift_starts_at=crew.shift_starts_at,
        shift_ends_at=crew.shift_ends_at,
        lon=lon,
        lat=lat,
        position_stale=is_stale(crew, now=now, stale_after=stale_after),
    )


def crew_states(session: Session, *, now: datetime, stale_after: timedelta) -> list[CrewState]:
    """Every crew's state, by crew id. Read as plain rows, not as ORM objects: a batch
    round reads every crew but changes only the few it assigns. (The flush makes the rows
    show what crews in the session were changed to, as the objects would.)"""
    session.flush()
    counts = repo.active_job_counts(session)
    states = []
    for row in crew_rows(session):
        stale = row.last_fix_at is None or now - row.last_fix_at > stale_after
        if row.last_lon is not None and row.last_lat is not None:
            lon, lat = row.last_lon, row.last_lat
        else:
            lon, lat = row.depot_lon, row.depot_lat
        states.append(
            CrewState(
                crew_id=row.id,
                name=row.name,
                skills=frozenset(row.skills),
                capacity=row.capacity,
                active_jobs=counts.get(row.id, 0),
                home_district_id=row.home_district_id,
                on_duty=row.status != CrewStatus.OFF_DUTY,
                shift_starts_at=row.shift_starts_at,
                shift_ends_at=row.shift_ends_at,
                lon=lon,
                lat=lat,
                position_stale=stale,
            )
        )
    return states


def _skills_by_service(session: Session) -> dict[str, frozenset[str]]:
    return {s.code: frozenset(s.skills) for s in list_service_types(session)}


def recommend_crews(
    session: Session,
    incident_id: int,
    *,
    now: datetime,
    travel: TravelModel,
    stale_after: timedelta,
    limit: int = 5,
) -> tuple[Incident, list[Recommendation]]:
    """The best crews for an incident, with ETA, travel model and a one-line reason each."""
    incident = get_incident(session, incident_id)
    if incident is None:
        raise NotFound(f"no incident with id {incident_id}")
    crews = crew_states(session, now=now, stale_after=stale_after)
    if not crews:
        return incident, []
    times = travel.travel_to(
        incident.lon, incident.lat, [c.lon for c in crews], [c.lat for c in crews]
    )
    skills = _skills_by_service(session)[incident.service_code]
    return incident, rank_crews(
        crews, times, skills=skills, district_id=incident.district_id, now=now, limit=limit
    )


def refresh_crew_status(session: Session, crew: Crew) -> None:
    """A crew's status follows its most advanced active assignment."""
    refresh_crew_statuses(session, [crew])


def refresh_crew_statuses(session: Session, crews: Sequence[Crew]) -> None:
    """``refresh_crew_status`` for many crews with one query (the session is flushed
    first, so the assignments' changes count)."""
    on_duty = [c for c in crews if c.status != CrewStatus.OFF_DUTY]
    if not on_duty:
        return
    session.flush()
    steps = repo.active_assignment_statuses(session, [c.id for c in on_duty])
    for crew in on_duty:
        crew.status = crew_status_for(steps.get(crew.id, set()))


def crew_status_for(steps: set[AssignmentStatus]) -> CrewStatus:
    """The status of an on-duty crew whose active assignments are at ``steps``."""
    if AssignmentStatus.ON_SCENE in steps:
        return CrewStatus.ON_SCENE
    if AssignmentStatus.EN_ROUTE in steps:
        return CrewStatus.EN_ROUTE
    if steps:
        return CrewStatus.ASSIGNED
    return CrewStatus.AVAILABLE


def move_incident(
    session: Session,
    incident: Incident,
    status: IncidentStatus,
    *,
    actor: str,
    now: datetime,
    note: str = "",
) -> None:
    """Move the incident, which the caller holds locked, to ``status``; the caller flushes
    and re-plans it (``plan_incident``) once every change of its use case is in."""
    change_status(session, incident, status, actor=actor, now=now, note=note or None)
    incident.updated_at = now  # a new crew on it is a change, even when the status stays


def assign_crew(
    session: Session,
    incident_id: int,
    crew_id: int,
    *,
    actor: str,
    now: datetime,
    travel: TravelModel,
    stale_after: timedelta,
    eta_s: float | None = None,
    travel_model: str | None = None,
    skills_by_service: dict[str, frozenset[str]] | None = None,
) -> Assignment:
    """Send ``crew_id`` to the incident (recommended or not). A crew already on it is
    relieved (its assignment becomes ``reassigned``). Skills and capacity are enforced.
    ``skills_by_service``: the catalogue's skills by service code, when the caller has it."""
    assignment, planned = _assign(
        session,
        incident_id,
        crew_id,
        actor=actor,
        now=now,
        travel=travel,
        stale_after=stale_after,
        eta_s=eta_s,
        travel_model=travel_model,
        skills_by_service=skills_by_service,
    )
    if planned is not None:
        # A new crew means a new acknowledge deadline, even when the status stays
        # "assigned". (Planning flushes the crew's status too.)
        plan_incident(session, planned, now=now)
    return assignment


def _assign(
    session: Session,
    incident_id: int,
    crew_id: int,
    *,
    actor: str,
    now: datetime,
    travel: TravelModel,
    stale_after: timedelta,
    eta_s: float | None,
    travel_model: str | None,
    skills_by_service: dict[str, frozenset[str]] | None,
) -> tuple[Assignment, Incident | None]:
    """``assign_crew`` but for planning, which the caller does (and which flushes): with
    the incident to plan, None when the crew was on it already (no change to plan)."""
    incident = lock_incident(session, incident_id)
    if incident is None:
        raise NotFound(f"no incident with id {incident_id}")
    if not incident.is_open:
        raise Conflict(f"incident {incident_id} is {incident.status}: reopen it before assigning")
    crew = get_crew(session, crew_id, lock=True)
    if crew is None:
        raise InvalidInput.for_field("crew_id", f"no crew with id {crew_id}")
    state = crew_state(
        crew,
        active_jobs=repo.active_job_count(session, crew_id),
        now=now,
        stale_after=stale_after,
    )
    current = repo.active_assignment(session, incident_id)
    if current is not None and current.crew_id == crew_id:
        return current, None
    if skills_by_service is None:
        skills_by_service = _skills_by_service(session)
    why_not = state.can_take(skills_by_service[incident.service_code], now)
    if why_not is not None:
        raise Conflict(f"crew {crew.name} cannot take incident {incident_id}: {why_not}")
    if eta_s is None or travel_model is None:
        times = travel.travel_to(incident.lon, incident.lat, [state.lon], [state.lat])
        eta_s, travel_model = float(times.seconds[0]), str(times.model[0])
    if current is not None:
        _end(current, AssignmentStatus.REASSIGNED, now=now)
        previous = get_crew(session, current.crew_id)
        record_event(
            session,
            incident,
            kind="reassigned",
            actor=actor,
            now=now,
            data={"from_crew_id": current.crew_id, "to_crew_id": crew_id},
        )
        session.flush()
        if previous is not None:
            refresh_crew_status(session, previous)
    assignment = Assignment(
        incident_id=incident_id,
        crew_id=crew_id,
        status=AssignmentStatus.PENDING,
        is_active=True,
        version=1,
        assigned_at=now,
        assigned_by=actor,
        eta_s=round(eta_s, 1),
        travel_model=travel_model,
        accepted_at=None,
        arrived_at=None,
        finished_at=None,
        note="",
    )
    session.add(assignment)
    session.flush()
    record_event(
        session,
        incident,
        kind="assigned",
        actor=actor,
        now=now,
        data={
            "assignment_id": assignment.id,
            "crew_id": crew_id,
            "crew_name": crew.name,
            "eta_s": assignment.eta_s,
            "travel_model": travel_model,
        },
    )
    move_incident(session, incident, IncidentStatus.ASSIGNED, actor=actor, now=now)
    refresh_crew_status(session, crew)
    return assignment, incident


def withdraw_crews(session: Session, incident: Incident, *, actor: str, now: datetime) -> None:
    """A closed incident needs no crew: its active assignment is cancelled and logged."""
    current = repo.active_assignment(session, incident.id)
    if current is None:
        return
    _end(current, AssignmentStatus.CANCELLED, now=now)
    record_event(
        session,
        incident,
        kind="crew_withdrawn",
        actor=actor,
        now=now,
        data={"assignment_id": current.id, "crew_id": current.crew_id, "why": str(incident.status)},
    )
    session.flush()
    crew = get_crew(session, current.crew_id)
    if crew is not None:
        refresh_crew_status(session, crew)
    session.flush()


def _end(assignment: Assignment, status: AssignmentStatus, *, now: datetime) -> None:
    assignment.status = status
    assignment.is_active = False
    assignment.finished_at = now
    assignment.version += 1


@dataclass(frozen=True)
class BatchResult:
    optimal: BatchPlan
    greedy: BatchPlan
    assignments: list[Assignment]


def batch_dispatch(
    session: Session,
    *,
    actor: str,
    now: datetime,
    travel: TravelModel,
    stale_after: timedelta,
    district_ids: Sequence[int] = (),
    bbox: tuple[float, float, float, float] | None = None,
) -> BatchResult:
    """Assign every unassigned open incident (in the area, if given) at once, optimally."""
    incidents = sorted(
        repo.unassigned_open_incidents(session, district_ids=district_ids, bbox=bbox),
        key=lambda i: (i.opened_at, i.id),  # report order: what the greedy baseline follows
    )
    crews = crew_states(session, now=now, stale_after=stale_after) if incidents else []
    if not incidents or not crews:
        empty = BatchPlan([], [i.id for i in incidents], 0.0, 0.0)
        return BatchResult(empty, empty, [])
    skills = _skills_by_service(session)
    batch = [BatchIncident(i.id, i.priority, skills[i.service_code]) for i in incidents]
    rows = travel.travel_matrix(
        [c.lon for c in crews],
        [c.lat for c in crews],
        [i.lon for i in incidents],
        [i.lat for i in incidents],
    )
    eta = np.vstack([r.seconds for r in rows])
    row_of = {i.id: r for r, i in enumerate(incidents)}
    column_of = {c.crew_id: k for k, c in enumerate(crews)}
    optimal = assign_optimal(batch, crews, eta, now)
    greedy = assign_greedy(batch, crews, eta, now)
    done = [
        _assign(
            session,
            a.incident_id,
            a.crew_id,
            actor=actor,
            now=now,
            travel=travel,
            stale_after=stale_after,
            eta_s=a.eta_s,
            travel_model=str(rows[row_of[a.incident_id]].model[column_of[a.crew_id]]),
            skills_by_service=skills,
        )
        for a in optimal.assignments
    ]
    # Nothing in the round reads what planning writes: the incidents given a crew are
    # planned at once (which flushes), as ``assign_crew`` plans each.
    plan_incidents(session, [i for _, i in done if i is not None], now=now)
    return BatchResult(optimal, greedy, [a for a, _ in done])
