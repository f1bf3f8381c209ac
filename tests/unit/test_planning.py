"""Shift plans with VROOM on small hand-made duration matrices: every job once, skills and the
vehicle's time respected, and travel totals that add up."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from fieldops.dispatch.planning import PlanJob, PlannedStop, PlanVehicle, RoutePlan, plan_routes

# Places on a straight road, in seconds of driving from place 0.
PLACES_S = np.array([0, 100, 200, 300, 1500])
LINE: NDArray[np.float64] = np.abs(PLACES_S[:, None] - PLACES_S[None, :]).astype(float)


def vehicle(
    vehicle_id: int = 7,
    *,
    start: int = 0,
    end: int | None = None,
    available_s: int = 8 * 3600,
    skills: frozenset[str] = frozenset(),
) -> PlanVehicle:
    return PlanVehicle(vehicle_id, start, end, available_s, skills)


def job(job_id: int, location: int, service_s: int = 60, *skills: str) -> PlanJob:
    return PlanJob(job_id, location, service_s, frozenset(skills))


def legs_add_up(plan: RoutePlan) -> None:
    """Each stop's arrival is the previous one's departure plus the leg to it."""
    by_vehicle: dict[int, list[PlannedStop]] = {}
    for stop in plan.stops:
        by_vehicle.setdefault(stop.vehicle_id, []).append(stop)
    for stops in by_vehicle.values():
        departure = 0
        for stop in stops:
            assert stop.arrival_s == departure + stop.travel_s
            departure = stop.arrival_s + 60


def test_every_job_is_visited_once_in_the_shortest_order() -> None:
    jobs = [job(11, 1), job(12, 3), job(13, 2)]

    plan = plan_routes([vehicle()], jobs, LINE)

    assert plan.unassigned == []
    assert [s.job_id for s in plan.stops] == [11, 13, 12]
    assert [(s.arrival_s, s.travel_s) for s in plan.stops] == [(100, 100), (260, 100), (420, 100)]
    # An open route (no end): its travel is exactly the sum of the legs to the jobs.
    assert plan.travel_s == sum(s.travel_s for s in plan.stops) == 300
    legs_add_up(plan)


def test_a_route_back_to_the_depot_counts_the_last_leg() -> None:
    jobs = [job(11, 1), job(12, 3), job(13, 2)]

    plan = plan_routes([vehicle(end=0)], jobs, LINE)

    assert sorted(s.job_id for s in plan.stops) == [11, 12, 13]
    # Out to place 3 and back: 600 s, whichever way round.
    assert plan.travel_s == 600
    last = plan.stops[-1]
    back = int(LINE[{11: 1, 12: 3, 13: 2}[last.job_id], 0])
    assert plan.travel_s == sum(s.travel_s for s in plan.stops) + back
    legs_add_up(plan)


def test_a_job_that_does_not_fit_in_the_shift_is_unassigned() -> None:
    # 1000 s left: place 4 is 1500 s away.
    jobs = [job(11, 1), job(12, 3), job(13, 2), job(14, 4)]

    plan = plan_routes([vehicle(available_s=1000)], jobs, LINE)

    assert plan.unassigned == [14]
    assert sorted(s.job_id for s in plan.stops) == [11, 12, 13]
    assert all(s.arrival_s + 60 <= 1000 for s in plan.stops)


def test_the_shift_end_bounds_service_time_too() -> None:
    # Reaching place 3 takes 300 s, but 30 min of work there would end past the shift.
    plan = plan_routes([vehicle(available_s=1000)], [job(12, 3, 1800)], LINE)

    assert plan.stops == []
    assert plan.unassigned == [12]
    assert plan.travel_s == 0


def test_skills_send_each_job_to_a_vehicle_that_can_do_it() -> None:
    vehicles = [
        vehicle(1, skills=frozenset({"tree_care"})),
        vehicle(2, start=4, skills=frozenset({"flood_pump", "sewer"})),
    ]
    # The pump jobs sit by vehicle 1 and the tree job by vehicle 2: skills win over distance.
    jobs = [
        job(21, 1, 60, "flood_pump"),
        job(22, 2, 60, "flood_pump", "sewer"),
        job(23, 4, 60, "tree_care"),
        job(24, 3, 60, "roads"),  # nobody fixes roads
        job(25, 3, 60, "tree_care", "flood_pump"),  # nobody has both
    ]

    plan = plan_routes(vehicles, jobs, LINE)

    assert {s.job_id: s.vehicle_id for s in plan.stops} == {21: 2, 22: 2, 23: 1}
    assert plan.unassigned == [24, 25]
    legs_add_up(plan)
    assert plan.travel_s == sum(s.travel_s for s in plan.stops)


def test_a_start_elsewhere_in_the_matrix() -> None:
    plan = plan_routes([vehicle(start=3)], [job(11, 1), job(13, 2)], LINE)

    assert [(s.job_id, s.arrival_s, s.travel_s) for s in plan.stops] == [
        (13, 100, 100),
        (11, 260, 100),
    ]


@pytest.mark.parametrize(
    ("vehicles", "jobs", "unassigned"),
    [
        ([], [job(11, 1), job(12, 2)], [11, 12]),
        ([vehicle()], [], []),
    ],
)
def test_nothing_to_plan(
    vehicles: list[PlanVehicle], jobs: list[PlanJob], unassigned: list[int]
) -> None:
    assert plan_routes(vehicles, jobs, LINE) == RoutePlan([], unassigned, 0)


def test_when_time_is_short_the_higher_priority_job_is_kept() -> None:
    # Time for one of the two jobs only; the farther one has the higher priority.
    jobs = [PlanJob(11, 1, 600, frozenset(), priority=0), PlanJob(12, 3, 600, frozenset(), 100)]

    plan = plan_routes([vehicle(available_s=1000)], jobs, LINE)

    assert [s.job_id for s in plan.stops] == [12]
    assert plan.unassigned == [11]


def test_the_matrix_is_read_from_to_whatever_its_memory_layout() -> None:
    # 100 s from place 0 to place 1, 900 s back.
    one_way = np.array([[0.0, 100.0, 500.0], [900.0, 0.0, 100.0], [100.0, 700.0, 0.0]])

    plan = plan_routes([vehicle()], [job(11, 1)], np.asfortranarray(one_way))

    assert [(s.arrival_s, s.travel_s) for s in plan.stops] == [(100, 100)]


def test_an_asymmetric_matrix_is_read_from_to() -> None:
    one_way = np.array([[0.0, 100.0, 500.0], [900.0, 0.0, 100.0], [100.0, 700.0, 0.0]])

    plan = plan_routes([vehicle(end=0)], [job(11, 1), job(12, 2)], one_way)

    # 0 -> 1 -> 2 -> 0 is 100 + 100 + 100; the other way round 500 + 700 + 900.
    assert [(s.job_id, s.travel_s) for s in plan.stops] == [(11, 100), (12, 100)]
    assert plan.travel_s == 300
