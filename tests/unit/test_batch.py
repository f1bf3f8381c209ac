"""Batch assignment: the exact optimum of priority-weighted response time against the
closest-free-crew-first baseline, with skills, shifts and capacity slots respected."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from fieldops.dispatch.batch import (
    INFEASIBLE,
    PRIORITY_WEIGHT,
    TYPICAL_JOB_S,
    UNASSIGNED_S,
    BatchIncident,
    BatchPlan,
    assign_greedy,
    assign_optimal,
    cost_matrix,
    travel_needed,
)
from fieldops.dispatch.ranking import CrewState

NOW = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
PUMP = frozenset({"flood_pump"})
TREE = frozenset({"tree_care"})
ROADS = frozenset({"roads"})


def crew(crew_id: int, **changes: object) -> CrewState:
    base = CrewState(
        crew_id=crew_id,
        name=f"crew {crew_id}",
        skills=frozenset({"flood_pump", "tree_care", "roads"}),
        capacity=1,
        active_jobs=0,
        home_district_id=1,
        on_duty=True,
        shift_starts_at=NOW - timedelta(hours=3),
        shift_ends_at=NOW + timedelta(hours=9),
        lon=-73.58,
        lat=45.52,
        position_stale=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def job(incident_id: int, priority: int, skills: frozenset[str] = PUMP) -> BatchIncident:
    return BatchIncident(incident_id, priority, skills)


def etas(rows: list[list[float]]) -> NDArray[np.float64]:
    """incidents x crews seconds."""
    return np.array(rows, dtype=float)


def pairs(plan: BatchPlan) -> dict[int, tuple[int, int]]:
    """incident id -> (crew id, slot)."""
    return {a.incident_id: (a.crew_id, a.slot) for a in plan.assignments}


def check_feasible(plan: BatchPlan, incidents: list[BatchIncident], crews: list[CrewState]) -> None:
    """Every incident once (assigned or not), skills and shifts held, no slot used twice,
    no crew past its capacity."""
    by_id = {c.crew_id: c for c in crews}
    needs = {i.incident_id: i.skills for i in incidents}
    assigned = [a.incident_id for a in plan.assignments]
    assert sorted(assigned + plan.unassigned) == sorted(needs)
    slots = [(a.crew_id, a.slot) for a in plan.assignments]
    assert len(set(slots)) == len(slots)
    for a in plan.assignments:
        c = by_id[a.crew_id]
        assert needs[a.incident_id] <= c.skills
        assert c.on_duty and c.shift_starts_at <= NOW < c.shift_ends_at
        assert c.active_jobs <= a.slot < c.capacity


# --- the crafted instances -----------------------------------------------------------------


def test_optimal_moves_the_near_crew_to_where_no_one_else_is_near() -> None:
    # Crew 1 is near both jobs; crew 2 is near the priority-1 job only. Greedy takes the
    # priority-1 job first, sends it its closest crew (1, 100 s) and leaves the routine job
    # with crew 2, 5000 s away. The optimum sends crew 2 (110 s) to the priority-1 job.
    crews = [crew(1), crew(2)]
    incidents = [job(10, 1), job(20, 5)]
    eta = etas([[100.0, 110.0], [100.0, 5000.0]])

    greedy = assign_greedy(incidents, crews, eta, NOW)
    optimal = assign_optimal(incidents, crews, eta, NOW)

    assert pairs(greedy) == {10: (1, 0), 20: (2, 0)}
    assert greedy.weighted_response_s == 16 * 100 + 1 * 5000 == 6600.0
    assert pairs(optimal) == {10: (2, 0), 20: (1, 0)}
    assert optimal.weighted_response_s == 16 * 110 + 1 * 100 == 1860.0
    assert optimal.objective == optimal.weighted_response_s
    assert optimal.unassigned == greedy.unassigned == []


def test_greedy_closest_first_can_leave_a_priority_1_job_far_away() -> None:
    # Two priority-1 jobs: greedy serves the first one with its closest crew, the only crew
    # near the second, which then waits 50 minutes.
    crews = [crew(1), crew(2)]
    incidents = [job(10, 1), job(11, 1)]
    eta = etas([[120.0, 200.0], [150.0, 3000.0]])

    greedy = assign_greedy(incidents, crews, eta, NOW)
    optimal = assign_optimal(incidents, crews, eta, NOW)

    assert pairs(greedy) == {10: (1, 0), 11: (2, 0)}
    assert [(a.incident_id, a.eta_s) for a in greedy.assignments] == [(10, 120.0), (11, 3000.0)]
    assert pairs(optimal) == {10: (2, 0), 11: (1, 0)}
    assert optimal.weighted_response_s == 16 * (200 + 150) == 5600.0
    assert greedy.weighted_response_s == 16 * (120 + 3000) == 49920.0


def test_a_capacity_2_crew_gets_slots_0_and_1_and_the_urgent_job_first() -> None:
    crews = [crew(1, capacity=2)]
    incidents = [job(10, 4), job(11, 2)]
    eta = etas([[300.0], [600.0]])

    plan = assign_optimal(incidents, crews, eta, NOW)

    assert pairs(plan) == {11: (1, 0), 10: (1, 1)}
    assert [(a.incident_id, a.eta_s) for a in plan.assignments] == [(10, 300.0), (11, 600.0)]
    assert plan.weighted_response_s == 8 * 600 + 2 * (300 + TYPICAL_JOB_S) == 10800.0


def test_a_crew_with_a_job_already_offers_only_its_later_slots() -> None:
    crews = [crew(1, capacity=3, active_jobs=1)]
    incidents = [job(10, 3), job(11, 3), job(12, 3)]
    eta = etas([[100.0], [200.0], [300.0]])

    plan = assign_optimal(incidents, crews, eta, NOW)

    assert sorted(slot for _, slot in pairs(plan).values()) == [1, 2]
    assert plan.unassigned == [12]
    assert plan.weighted_response_s == 4 * (100 + TYPICAL_JOB_S + 200 + 2 * TYPICAL_JOB_S)


def test_skills_are_respected_and_a_job_no_one_can_do_stays_unassigned() -> None:
    crews = [
        crew(1, skills=PUMP),
        crew(2, skills=TREE),
        crew(3, skills=TREE | ROADS),
    ]
    incidents = [job(10, 2, TREE), job(11, 2, PUMP), job(12, 3, ROADS), job(13, 1, TREE | PUMP)]
    # Crew 1 is the closest to everything but only pumps; of the tree crews, crew 3 is the
    # closer to the tree job, and the only one for the road job.
    eta = etas([[10.0, 500.0, 400.0], [10.0, 20.0, 30.0], [10.0, 20.0, 30.0], [1.0, 1.0, 1.0]])

    optimal = assign_optimal(incidents, crews, eta, NOW)
    greedy = assign_greedy(incidents, crews, eta, NOW)

    check_feasible(optimal, incidents, crews)
    check_feasible(greedy, incidents, crews)
    assert pairs(optimal) == {10: (2, 0), 11: (1, 0), 12: (3, 0)}
    assert optimal.unassigned == [13]
    # Greedy spends crew 3 on the tree job and has no one left for the road job.
    assert pairs(greedy) == {10: (3, 0), 11: (1, 0)}
    assert greedy.unassigned == [12, 13]
    assert optimal.objective < greedy.objective


@pytest.mark.parametrize(
    "unavailable",
    [
        {"on_duty": False},
        {"shift_starts_at": NOW + timedelta(minutes=1)},
        {"shift_ends_at": NOW},
        {"active_jobs": 1},
    ],
)
def test_crews_off_duty_off_shift_or_full_get_nothing(unavailable: dict[str, object]) -> None:
    crews = [crew(1, **unavailable), crew(2)]
    incidents = [job(10, 1), job(11, 2)]
    eta = etas([[10.0, 900.0], [10.0, 800.0]])

    plan = assign_optimal(incidents, crews, eta, NOW)

    assert pairs(plan) == {10: (2, 0)}
    assert plan.unassigned == [11]


def test_when_crews_are_scarce_the_priority_1_incidents_are_served() -> None:
    # One crew, right next to the routine jobs and 25 minutes from the priority-1 ones.
    crews = [crew(1, capacity=2)]
    incidents = [job(20, 5), job(10, 1), job(21, 4), job(11, 1), job(22, 5)]
    eta = etas([[30.0], [1500.0], [40.0], [1400.0], [20.0]])

    plan = assign_optimal(incidents, crews, eta, NOW)

    assert {a.incident_id for a in plan.assignments} == {10, 11}
    assert sorted(plan.unassigned) == [20, 21, 22]
    left = (1 + 2 + 1) * UNASSIGNED_S
    assert plan.objective == plan.weighted_response_s + left
    assert sorted(pairs(plan).values()) == [(1, 0), (1, 1)]
    assert plan.weighted_response_s == 16 * (1500 + 1400 + TYPICAL_JOB_S)


def test_no_incidents_is_an_empty_plan() -> None:
    for assign in (assign_optimal, assign_greedy):
        assert assign([], [crew(1)], np.zeros((0, 1)), NOW) == BatchPlan([], [], 0.0, 0.0)


def test_no_free_crew_leaves_everything_unassigned_at_its_cost() -> None:
    incidents = [job(10, 1), job(11, 3)]

    plan = assign_optimal(incidents, [crew(1, on_duty=False)], etas([[5.0], [5.0]]), NOW)

    assert plan.assignments == []
    assert plan.unassigned == [10, 11]
    assert plan.weighted_response_s == 0.0
    assert plan.objective == (16 + 4) * UNASSIGNED_S


def test_a_job_too_far_to_be_worth_it_is_left_for_later() -> None:
    # Priority 5 weighs 1: 4 h 10 min away costs more than leaving it unassigned (4 h).
    plan = assign_optimal([job(10, 5)], [crew(1)], etas([[UNASSIGNED_S + 600]]), NOW)

    assert plan.assignments == []
    assert plan.unassigned == [10]
    assert plan.objective == UNASSIGNED_S


def test_objective_not_weighted_response_is_what_optimal_minimises() -> None:
    # Crew 1 can pump and fix roads, crew 2 only pumps. Greedy gives the priority-1 flood to
    # crew 1 (closest) and leaves the pothole with no one; the optimum sends crew 2 to the
    # flood so the pothole is served too. Its weighted response is *higher* (it serves one
    # more job), its objective far lower: only the objectives compare like with like.
    crews = [crew(1, skills=PUMP | ROADS), crew(2, skills=PUMP)]
    incidents = [job(10, 1, PUMP), job(11, 4, ROADS)]
    eta = etas([[100.0, 600.0], [100.0, 100.0]])

    greedy = assign_greedy(incidents, crews, eta, NOW)
    optimal = assign_optimal(incidents, crews, eta, NOW)

    assert pairs(greedy) == {10: (1, 0)}
    assert greedy.unassigned == [11]
    assert (greedy.weighted_response_s, greedy.objective) == (1600.0, 1600.0 + 2 * UNASSIGNED_S)
    assert pairs(optimal) == {10: (2, 0), 11: (1, 0)}
    assert (optimal.weighted_response_s, optimal.objective) == (9800.0, 9800.0)
    assert optimal.weighted_response_s > greedy.weighted_response_s
    assert optimal.objective < greedy.objective


# --- random instances ----------------------------------------------------------------------

SKILL_SETS = [PUMP, TREE, ROADS, PUMP | ROADS, TREE | ROADS, PUMP | TREE | ROADS]


def random_instance(
    seed: int,
) -> tuple[list[BatchIncident], list[CrewState], NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    n_crews = int(rng.integers(1, 7))
    n_incidents = int(rng.integers(1, 10))
    crews = []
    for c in range(n_crews):
        capacity = int(rng.integers(1, 4))
        crews.append(
            crew(
                c + 1,
                skills=SKILL_SETS[int(rng.integers(len(SKILL_SETS)))],
                capacity=capacity,
                active_jobs=int(rng.integers(0, capacity + 1)),
                on_duty=bool(rng.random() > 0.15),
                shift_ends_at=NOW + timedelta(hours=9) if rng.random() > 0.15 else NOW,
            )
        )
    incidents = [
        job(100 + i, int(rng.integers(1, 6)), [PUMP, TREE, ROADS][int(rng.integers(3))])
        for i in range(n_incidents)
    ]
    # Up to 5 h: some far enough that leaving a routine job for later is the better deal.
    eta = rng.uniform(30.0, 5 * 3600.0, size=(n_incidents, n_crews)).round(1)
    return incidents, crews, eta


def brute_force_objective(
    incidents: list[BatchIncident], crews: list[CrewState], eta: NDArray[np.float64]
) -> float:
    """The best objective over every way of giving each incident a free slot or none."""
    cost, _crew_of_slot, _rank, weights = cost_matrix(incidents, crews, eta, NOW)
    choices = [None, *range(cost.shape[1])]
    best = np.inf
    for pick in itertools.product(choices, repeat=len(incidents)):
        used = [c for c in pick if c is not None]
        if len(set(used)) < len(used):
            continue
        total = sum(
            weights[r] * UNASSIGNED_S if c is None else cost[r, c] for r, c in enumerate(pick)
        )
        best = min(best, total)
    return float(best)


@pytest.mark.parametrize("seed", range(40))
def test_optimal_is_feasible_and_never_worse_than_greedy(seed: int) -> None:
    incidents, crews, eta = random_instance(seed)

    optimal = assign_optimal(incidents, crews, eta, NOW)
    greedy = assign_greedy(incidents, crews, eta, NOW)

    check_feasible(optimal, incidents, crews)
    check_feasible(greedy, incidents, crews)
    assert optimal.objective <= greedy.objective
    # Both report the weighted response of what they assigned, slot waits included.
    for plan in (optimal, greedy):
        weights = {i.incident_id: PRIORITY_WEIGHT[i.priority] for i in incidents}
        left = sum(weights[i] for i in plan.unassigned) * UNASSIGNED_S
        assert plan.objective == pytest.approx(plan.weighted_response_s + left, abs=0.11)


@pytest.mark.parametrize("seed", range(40))
def test_optimal_matches_linear_sum_assignment_on_the_same_costs(seed: int) -> None:
    incidents, crews, eta = random_instance(seed)
    cost, _crew_of_slot, _rank, weights = cost_matrix(incidents, crews, eta, NOW)
    n = len(incidents)
    stay = np.full((n, n), INFEASIBLE)
    np.fill_diagonal(stay, weights * UNASSIGNED_S)
    full = np.hstack([cost, stay])
    rows, cols = linear_sum_assignment(full)

    plan = assign_optimal(incidents, crews, eta, NOW)

    assert plan.objective == pytest.approx(float(full[rows, cols].sum()), abs=0.06)


@pytest.mark.parametrize("seed", range(40))
def test_optimal_matches_brute_force_on_small_instances(seed: int) -> None:
    incidents, crews, eta = random_instance(seed)
    incidents, crews, eta = incidents[:4], crews[:3], eta[:4, :3]

    plan = assign_optimal(incidents, crews, eta, NOW)

    assert plan.objective == pytest.approx(brute_force_objective(incidents, crews, eta), abs=0.06)


@pytest.mark.parametrize("seed", range(60))
def test_the_travel_times_a_plan_uses_are_those_travel_needed_keeps(seed: int) -> None:
    """A round searches the street graph only for the incidents and crews
    ``travel_needed`` keeps: both plans must be exactly those of the whole matrix."""
    incidents, crews, eta = random_instance(seed)
    rows, columns = travel_needed(incidents, crews, NOW)
    kept = np.full_like(eta, np.inf)
    kept[np.ix_(rows, columns)] = eta[np.ix_(rows, columns)]

    assert assign_optimal(incidents, crews, kept, NOW) == assign_optimal(incidents, crews, eta, NOW)
    assert assign_greedy(incidents, crews, kept, NOW) == assign_greedy(incidents, crews, eta, NOW)


def test_travel_needed_leaves_out_who_can_take_nothing() -> None:
    crews = [
        crew(1, skills=TREE),
        crew(2, skills=PUMP, capacity=1, active_jobs=1),  # full
        crew(3, skills=PUMP | ROADS, on_duty=False),
        crew(4, skills=ROADS, shift_ends_at=NOW),  # shift over
        crew(5, skills=PUMP | TREE, capacity=2, active_jobs=1),
    ]
    incidents = [job(10, 3, ROADS), job(11, 2, TREE), job(12, 1, PUMP), job(13, 4, PUMP | ROADS)]

    rows, columns = travel_needed(incidents, crews, NOW)

    # Only crews 1 and 5 can take anything; no one can take the roads jobs.
    assert [incidents[r].incident_id for r in rows] == [11, 12]
    assert [crews[c].crew_id for c in columns] == [1, 5]


def test_cost_matrix_layout() -> None:
    crews = [crew(1, capacity=2), crew(2, skills=TREE), crew(3, on_duty=False)]
    incidents = [job(10, 1), job(11, 5, TREE)]
    eta = etas([[100.0, 200.0, 300.0], [400.0, 500.0, 600.0]])

    cost, crew_of_slot, slot_rank, weights = cost_matrix(incidents, crews, eta, NOW)

    assert crew_of_slot.tolist() == [0, 0, 1, 2]
    assert slot_rank.tolist() == [0, 1, 0, 0]
    assert weights.tolist() == [16.0, 1.0]
    assert cost.tolist() == [
        [1600.0, 16 * (100 + TYPICAL_JOB_S), INFEASIBLE, INFEASIBLE],
        [400.0, 400 + TYPICAL_JOB_S, 500.0, INFEASIBLE],
    ]
