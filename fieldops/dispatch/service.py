"""Dispatch use cases: recommend, assign, batch-assign and withdraw (the crew's own steps are
in ``crew_steps``, its shift route in ``shifts``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sqlalchemy.orm import Session

from fieldops.crews.models import Crew, CrewStatus
from fieldops.crews.repo import get_crew, lock_crews
from fieldops.db.ids import give_ids
from fieldops.dispatch import repo, roster
from fieldops.dispatch.batch import (
    BatchIncident,
    BatchPlan,
    assign_greedy,
    assign_optimal,
    travel_needed,
)
from fieldops.dispatch.models import Assignment, AssignmentStatus
from fieldops.dispatch.ranking import CrewState, Recommendation, rank_crews
from fieldops.dispatch.roster import crew_states
from fieldops.errors import Conflict, InvalidInput, NotFound
from fieldops.escalation.service import plan_incident, plan_incidents
from fieldops.geo.routing import Travel
from fieldops.incidents.models import Incident, IncidentStatus
from fieldops.incidents.repo import get_incident, lock_incidents
from fieldops.incidents.service import EventRows, change_status, record_event, write_events


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
    skills = roster.skills_by_service(session)[incident.service_code]
    return incident, rank_crews(
        crews, times, skills=skills, district_id=incident.district_id, now=now, limit=limit
    )


def refresh_crew_status(session: Session, crew: Crew) -> None:
    """A crew's status follows its most advanced active assignment."""
    refresh_crew_statuses(session, [crew])


def refresh_crew_statuses(session: Session, crews: Sequence[Crew]) -> None:
    """``refresh_crew_status`` for many crews with one query (the session is flushed
    first, so the assignments' changes count)."""
    session.flush()  # always: callers plan next, from what is in the table
    on_duty = [c for c in crews if c.status != CrewStatus.OFF_DUTY]
    if not on_duty:
        return
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
    rows: EventRows | None = None,
) -> None:
    """Move the incident, which the caller holds locked, to ``status``; the caller flushes
    and re-plans it (``plan_incident``) once every change of its use case is in.
    ``rows``: the move's event is gathered there (see ``record_event``)."""
    change_status(session, incident, status, actor=actor, now=now, note=note or None, rows=rows)
    # A new crew on it is a change, even when the status stays (and a step applied late,
    # after a newer change, does not move the time back).
    incident.updated_at = max(incident.updated_at, now)


@dataclass(frozen=True)
class Dispatch:
    """One crew sent to one incident; ``eta_s`` and ``travel_model`` when the caller
    already ranked the crew (else they are computed)."""

    incident_id: int
    crew_id: int
    eta_s: float | None = None
    travel_model: str | None = None


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
    ((assignment, planned),) = assign_crews(
        session,
        [Dispatch(incident_id, crew_id, eta_s, travel_model)],
        actor=actor,
        now=now,
        travel=travel,
        stale_after=stale_after,
        skills_by_service=skills_by_service,
    )
    if planned is not None:
        # A new crew means a new acknowledge deadline, even when the status stays
        # "assigned". (Planning flushes the crew's status too.)
        plan_incident(session, planned, now=now)
    return assignment


def assign_crews(
    session: Session,
    dispatches: Sequence[Dispatch],
    *,
    actor: str,
    now: datetime,
    travel: TravelModel,
    stale_after: timedelta,
    skills_by_service: dict[str, frozenset[str]] | None = None,
) -> list[tuple[Assignment, Incident | None]]:
    """``assign_crew`` for many incidents, in order, with a handful of statements, but for
    planning, which the caller does: each assignment with the incident to plan (None
    when the crew was on it already: nothing changed). The first dispatch refused stops
    the whole (the caller's transaction is to be rolled back)."""
    incidents = lock_incidents(session, [d.incident_id for d in dispatches])
    crews = lock_crews(session, [d.crew_id for d in dispatches])
    jobs = repo.active_job_counts(session, crew_ids=list(crews))
    current = repo.active_assignments(session, list(incidents))
    skills = (
        skills_by_service if skills_by_service is not None else roster.skills_by_service(session)
    )
    # First every check (and the crews' loads as the dispatches before it leave them),
    # then the new rows with their ids, then the log, in the order of the dispatches.
    made: list[tuple[Dispatch, Assignment, Assignment | None]] = []
    outcomes: list[tuple[Assignment, Incident | None]] = []
    for d in dispatches:
        incident = incidents.get(d.incident_id)
        if incident is None:
            raise NotFound(f"no incident with id {d.incident_id}")
        if not incident.is_open:
            raise Conflict(
                f"incident {incident.id} is {incident.status}: reopen it before assigning"
            )
        crew = crews.get(d.crew_id)
        if crew is None:
            raise InvalidInput.for_field("crew_id", f"no crew with id {d.crew_id}")
        state = crew_state(crew, active_jobs=jobs.get(crew.id, 0), now=now, stale_after=stale_after)
        relieved = current.get(incident.id)
        if relieved is not None and relieved.crew_id == crew.id:
            outcomes.append((relieved, None))
            continue
        why_not = state.can_take(skills[incident.service_code], now)
        if why_not is not None:
            raise Conflict(f"crew {crew.name} cannot take incident {incident.id}: {why_not}")
        eta_s, travel_model = d.eta_s, d.travel_model
        if eta_s is None or travel_model is None:
            times = travel.travel_to(incident.lon, incident.lat, [state.lon], [state.lat])
            eta_s, travel_model = float(times.seconds[0]), str(times.model[0])
        assignment = _new_assignment(incident.id, crew.id, actor, now, eta_s, travel_model)
        if relieved is not None:
            jobs[relieved.crew_id] = jobs.get(relieved.crew_id, 1) - 1
        jobs[crew.id] = jobs.get(crew.id, 0) + 1
        current[incident.id] = assignment
        made.append((d, assignment, relieved))
        outcomes.append((assignment, incident))
    session.add_all(a for _, a, _ in made)
    give_ids(session, session.new)
    touched: dict[int, Crew] = {}
    log: EventRows = []  # written with one statement, after the assignments
    for d, assignment, relieved in made:
        incident, crew = incidents[d.incident_id], crews[d.crew_id]
        touched[crew.id] = crew
        if relieved is not None:
            _end(relieved, AssignmentStatus.REASSIGNED, now=now)
            record_event(
                session,
                incident,
                kind="reassigned",
                actor=actor,
                now=now,
                data={"from_crew_id": relieved.crew_id, "to_crew_id": crew.id},
                rows=log,
            )
            if relieved.crew_id not in touched:
                previous = get_crew(session, relieved.crew_id)
                if previous is not None:
                    touched[previous.id] = previous
        record_event(
            session,
            incident,
            kind="assigned",
            actor=actor,
            now=now,
            data={
                "assignment_id": assignment.id,
                "crew_id": crew.id,
                "crew_name": crew.name,
                "eta_s": assignment.eta_s,
                "travel_model": assignment.travel_model,
            },
            rows=log,
        )
        move_incident(session, incident, IncidentStatus.ASSIGNED, actor=actor, now=now, rows=log)
    if made:
        write_events(session, log)  # which flushes the new assignments first
        refresh_crew_statuses(session, list(touched.values()))  # which flushes
    return outcomes


def _new_assignment(
    incident_id: int, crew_id: int, actor: str, now: datetime, eta_s: float, travel_model: str
) -> Assignment:
    return Assignment(
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
    greedy: BatchPlan | None  # None when not asked for (``baseline=False``)
    assignments: list[Assignment]


def _travel_times(
    batch: Sequence[BatchIncident],
    incidents: Sequence[Any],
    crews: Sequence[CrewState],
    *,
    now: datetime,
    travel: TravelModel,
) -> tuple[NDArray[np.float64], NDArray[np.object_]]:
    """Travel seconds from each crew to each incident and the travel model of each
    (incidents x crews), found only where a plan can use them (``travel_needed``); the
    rest are infinite, never read."""
    rows, columns = travel_needed(batch, crews, now)
    eta = np.full((len(incidents), len(crews)), np.inf)
    model = np.full((len(incidents), len(crews)), "", dtype=object)
    if len(rows) == 0:
        return eta, model
    found = travel.travel_matrix(
        [crews[k].lon for k in columns],
        [crews[k].lat for k in columns],
        [incidents[r].lon for r in rows],
        [incidents[r].lat for r in rows],
    )
    block = np.ix_(rows, columns)
    eta[block] = np.vstack([f.seconds for f in found])
    model[block] = np.vstack([f.model for f in found])
    return eta, model


def batch_dispatch(
    session: Session,
    *,
    actor: str,
    now: datetime,
    travel: TravelModel,
    stale_after: timedelta,
    district_ids: Sequence[int] = (),
    bbox: tuple[float, float, float, float] | None = None,
    incident_ids: Sequence[int] | None = None,
    baseline: bool = True,
) -> BatchResult:
    """Assign every unassigned open incident (in the districts or box, or among
    ``incident_ids``, if given) at once, optimally. ``baseline``: also plan what the
    greedy baseline would have done, for comparison (a round whose caller reports no
    comparison, a scheduled one, skips it)."""
    incidents = sorted(
        repo.unassigned_open_incidents(
            session, district_ids=district_ids, bbox=bbox, incident_ids=incident_ids
        ),
        key=lambda i: (i.opened_at, i.id),  # report order: what the greedy baseline follows
    )
    crews = (
        crew_states(session, now=now, stale_after=stale_after, able_only=True) if incidents else []
    )
    if not incidents or not crews:
        empty = BatchPlan([], [i.id for i in incidents], 0.0, 0.0)
        return BatchResult(empty, empty, [])
    skills = roster.skills_by_service(session)
    batch = [BatchIncident(i.id, i.priority, skills[i.service_code]) for i in incidents]
    eta, model = _travel_times(batch, incidents, crews, now=now, travel=travel)
    row_of = {i.id: r for r, i in enumerate(incidents)}
    column_of = {c.crew_id: k for k, c in enumerate(crews)}
    optimal = assign_optimal(batch, crews, eta, now)
    greedy = assign_greedy(batch, crews, eta, now) if baseline else None
    done = assign_crews(
        session,
        [
            Dispatch(
                a.incident_id,
                a.crew_id,
                a.eta_s,
                str(model[row_of[a.incident_id], column_of[a.crew_id]]),
            )
            for a in optimal.assignments
        ],
        actor=actor,
        now=now,
        travel=travel,
        stale_after=stale_after,
        skills_by_service=skills,
    )
    # Nothing in the round reads what planning writes: the incidents given a crew are
    # planned at once (which flushes), as ``assign_crew`` plans each.
    made = {i.id: a for a, i in done if i is not None}
    plan_incidents(session, [i for _, i in done if i is not None], now=now, assigned=made)
    return BatchResult(optimal, greedy, [a for a, _ in done])
