"""A crew's shift as a route: its queued jobs ordered by VROOM from where it is back to its
depot, with road travel times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy.orm import Session

from fieldops.crews.repo import get_crew
from fieldops.dispatch import repo
from fieldops.dispatch.models import AssignmentStatus
from fieldops.dispatch.service import TravelModel, crew_position
from fieldops.errors import NotFound

# A job's time on site when planning a shift, by service group; the rest take the default.
SERVICE_TIME_S = {
    "roads": 40 * 60,
    "trees": 60 * 60,
    "wildlife": 30 * 60,
    "housing_health": 45 * 60,
}
DEFAULT_SERVICE_TIME_S = 30 * 60


@dataclass(frozen=True)
class ShiftStop:
    assignment_id: int
    incident_id: int
    arrive_at: datetime
    travel_s: int


@dataclass(frozen=True)
class ShiftPlan:
    crew_id: int
    stops: list[ShiftStop]
    unplanned: list[int]  # assignment ids that do not fit in the shift
    travel_s: int


def plan_shift(session: Session, crew_id: int, *, now: datetime, travel: TravelModel) -> ShiftPlan:
    """Order the crew's queued jobs into a route for the rest of its shift (VROOM), from
    where it is back to its depot, with road travel times."""
    from fieldops.dispatch.planning import PlanJob, PlanVehicle, plan_routes  # loads VROOM

    crew = get_crew(session, crew_id)
    if crew is None:
        raise NotFound(f"no crew with id {crew_id}")
    queued = [
        (a, i)
        for a, i in repo.crew_assignments(session, crew_id)
        if a.status in {AssignmentStatus.PENDING, AssignmentStatus.ACCEPTED}
    ]
    if not queued:
        return ShiftPlan(crew_id, [], [], 0)
    here = crew_position(crew)
    lons = [here[0], crew.depot_lon, *(i.lon for _, i in queued)]
    lats = [here[1], crew.depot_lat, *(i.lat for _, i in queued)]
    rows = travel.travel_matrix(lons, lats, lons, lats)
    durations = np.vstack([r.seconds for r in rows]).T  # [from, to]
    np.fill_diagonal(durations, 0.0)
    skills = frozenset(crew.skills)
    plan = plan_routes(
        [PlanVehicle(crew_id, 0, 1, int((crew.shift_ends_at - now).total_seconds()), skills)],
        [
            PlanJob(
                a.id,
                k + 2,
                SERVICE_TIME_S.get(i.service_group, DEFAULT_SERVICE_TIME_S),
                frozenset(),
                priority=(6 - i.priority) * 20,
            )
            for k, (a, i) in enumerate(queued)
        ],
        durations,
    )
    incident_of = {a.id: i.id for a, i in queued}
    return ShiftPlan(
        crew_id,
        [
            ShiftStop(
                s.job_id, incident_of[s.job_id], now + timedelta(seconds=s.arrival_s), s.travel_s
            )
            for s in plan.stops
        ],
        plan.unassigned,
        plan.travel_s,
    )
