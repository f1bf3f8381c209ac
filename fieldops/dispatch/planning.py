"""Shift plans for non-urgent work: order queued jobs into routes with VROOM. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import vroom
from numpy.typing import NDArray


@dataclass(frozen=True)
class PlanVehicle:
    vehicle_id: int
    start: int  # index into the duration matrix
    end: int | None  # None: the route ends at its last job
    available_s: int  # from now to the end of the shift
    skills: frozenset[str]


@dataclass(frozen=True)
class PlanJob:
    job_id: int
    location: int
    service_s: int
    skills: frozenset[str]
    priority: int = 0  # VROOM priority 0..100: higher is kept first when time is short


@dataclass(frozen=True)
class PlannedStop:
    vehicle_id: int
    job_id: int
    arrival_s: int  # seconds from now
    travel_s: int  # from the previous stop


@dataclass(frozen=True)
class RoutePlan:
    stops: list[PlannedStop]
    unassigned: list[int]
    travel_s: int  # total driving time of every route


def plan_routes(
    vehicles: Sequence[PlanVehicle],
    jobs: Sequence[PlanJob],
    durations_s: NDArray[np.float64],
    *,
    exploration_level: int = 5,
    threads: int = 2,
) -> RoutePlan:
    """Routes that visit the jobs within each vehicle's time, respecting skills."""
    if not jobs or not vehicles:
        return RoutePlan([], [j.job_id for j in jobs], 0)
    skill_ids = {
        s: i + 1
        for i, s in enumerate(
            sorted({s for v in vehicles for s in v.skills} | {s for j in jobs for s in j.skills})
        )
    }
    problem = vroom.Input()
    problem.set_durations_matrix(
        # C order whatever the caller's layout: pyvroom reads the buffer row by row.
        profile="car",
        matrix_input=np.ascontiguousarray(np.rint(durations_s), dtype=np.uint32),
    )
    problem.add_vehicle(
        [
            vroom.Vehicle(
                v.vehicle_id,
                start=v.start,
                end=v.end,
                time_window=vroom.TimeWindow(0, max(v.available_s, 0)),
                skills={skill_ids[s] for s in v.skills},
            )
            for v in vehicles
        ]
    )
    problem.add_job(
        [
            vroom.Job(
                j.job_id,
                location=j.location,
                default_service=j.service_s,
                skills={skill_ids[s] for s in j.skills},
                priority=j.priority,
            )
            for j in jobs
        ]
    )
    solution = problem.solve(exploration_level=exploration_level, nb_threads=threads)
    routes = solution.routes
    stops: list[PlannedStop] = []
    travel_total = 0
    for vehicle_id, route in routes.groupby("vehicle_id", sort=True):
        previous_departure = 0
        for row in route.itertuples():
            travel = int(row.arrival) - previous_departure - int(row.waiting_time)
            if row.type == "job":
                stops.append(PlannedStop(int(vehicle_id), int(row.id), int(row.arrival), travel))
            if row.type in {"job", "end"}:
                travel_total += travel
            previous_departure = (
                int(row.arrival) + int(row.waiting_time) + int(row.service) + int(row.setup)
            )
    unassigned = sorted(int(u["id"]) for u in solution.to_dict().get("unassigned", []))
    return RoutePlan(stops, unassigned, travel_total)
