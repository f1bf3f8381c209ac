"""Optimal batch assignment for surges: minimise total priority-weighted response time.

Each crew offers as many slots as it has free capacity; slot k of a crew starts after
k typical jobs. Each incident may also stay unassigned, at a cost that grows with its
priority, so that scarce crews go to the incidents that matter most instead of to the
cheapest ones. The assignment is a rectangular linear sum assignment (exact). Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from fieldops.dispatch.ranking import CrewState

# Weight of one second of waiting, by priority (1 = life safety .. 5 = routine).
PRIORITY_WEIGHT = {1: 16.0, 2: 8.0, 3: 4.0, 4: 2.0, 5: 1.0}
# What a crew's later slots wait for: one typical job before each.
TYPICAL_JOB_S = 45 * 60.0
# The cost of leaving an incident for a later round, in weighted seconds.
UNASSIGNED_S = 4 * 3600.0
INFEASIBLE = 1e12


@dataclass(frozen=True)
class BatchIncident:
    incident_id: int
    priority: int
    skills: frozenset[str]


@dataclass(frozen=True)
class BatchAssignment:
    incident_id: int
    crew_id: int
    eta_s: float
    slot: int  # 0: the crew's next job; k: after k other jobs of this batch


@dataclass(frozen=True)
class BatchPlan:
    assignments: list[BatchAssignment]
    unassigned: list[int]
    weighted_response_s: float  # sum over assigned of weight x (eta + slot wait)
    objective: float  # the same plus the cost of every incident left unassigned


def _slots(crews: Sequence[CrewState]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    crew_of_slot: list[int] = []
    slot_rank: list[int] = []
    for c, crew in enumerate(crews):
        for k in range(max(crew.capacity - crew.active_jobs, 0)):
            crew_of_slot.append(c)
            slot_rank.append(k + crew.active_jobs)
    return np.array(crew_of_slot, dtype=np.intp), np.array(slot_rank, dtype=np.intp)


def allowed_pairs(
    incidents: Sequence[BatchIncident], crews: Sequence[CrewState], now: datetime
) -> NDArray[np.bool_]:
    """Which crew may take which incident (incidents x crews): on duty, on shift, every
    skill the incident needs."""
    allowed = np.zeros((len(incidents), len(crews)), dtype=bool)
    by_skills: dict[frozenset[str], NDArray[np.bool_]] = {}
    for row, incident in enumerate(incidents):
        if incident.skills not in by_skills:
            by_skills[incident.skills] = np.array(
                [
                    c.on_duty
                    and c.shift_starts_at <= now < c.shift_ends_at
                    and incident.skills <= c.skills
                    for c in crews
                ],
                dtype=bool,
            )
        allowed[row] = by_skills[incident.skills]
    return allowed


def travel_needed(
    incidents: Sequence[BatchIncident], crews: Sequence[CrewState], now: datetime
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """The incidents (rows) and crews (columns) whose travel times a plan can use: an
    incident some crew with a free slot may take, a crew with a free slot that may take
    one of them. Every other time is never read (its cost is INFEASIBLE whatever it is),
    so a round need not search the street graph for it: at night a backlog of incidents
    whose crews are off shift waits, round after round."""
    allowed = allowed_pairs(incidents, crews, now)
    allowed &= np.array([c.capacity > c.active_jobs for c in crews], dtype=bool)[None, :]
    return np.flatnonzero(allowed.any(axis=1)), np.flatnonzero(allowed.any(axis=0))


def cost_matrix(
    incidents: Sequence[BatchIncident],
    crews: Sequence[CrewState],
    eta_s: NDArray[np.float64],
    now: datetime,
) -> tuple[NDArray[np.float64], NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """Weighted cost of each incident in each crew slot (INFEASIBLE where not allowed).

    ``eta_s`` is incidents x crews. Returns (cost, crew_of_slot, slot_rank, weights).
    """
    crew_of_slot, slot_rank = _slots(crews)
    weights = np.array([PRIORITY_WEIGHT.get(i.priority, 1.0) for i in incidents])
    allowed = allowed_pairs(incidents, crews, now)
    wait = eta_s[:, crew_of_slot] + TYPICAL_JOB_S * slot_rank[None, :]
    cost = np.where(allowed[:, crew_of_slot], weights[:, None] * wait, INFEASIBLE)
    return cost, crew_of_slot, slot_rank, weights


def assign_optimal(
    incidents: Sequence[BatchIncident],
    crews: Sequence[CrewState],
    eta_s: NDArray[np.float64],
    now: datetime,
) -> BatchPlan:
    """The exact minimum of total weighted response time, capacity and skills respected."""
    if not incidents:
        return BatchPlan([], [], 0.0, 0.0)
    cost, crew_of_slot, slot_rank, weights = cost_matrix(incidents, crews, eta_s, now)
    n = len(incidents)
    stay = np.full((n, n), INFEASIBLE)
    np.fill_diagonal(stay, weights * UNASSIGNED_S)
    rows, cols = linear_sum_assignment(np.hstack([cost, stay]))
    return _plan(incidents, crews, eta_s, cost, crew_of_slot, slot_rank, rows, cols)


def assign_greedy(
    incidents: Sequence[BatchIncident],
    crews: Sequence[CrewState],
    eta_s: NDArray[np.float64],
    now: datetime,
) -> BatchPlan:
    """The baseline we beat: what a dispatcher under stress does, taking reports in the
    order they came in (the order of ``incidents``) and sending each the closest crew
    that still has a free slot. Early reports take the crews; later, worse ones wait."""
    if not incidents:
        return BatchPlan([], [], 0.0, 0.0)
    cost, crew_of_slot, slot_rank, _ = cost_matrix(incidents, crews, eta_s, now)
    taken = np.zeros(cost.shape[1], dtype=bool)
    rows: list[int] = []
    cols: list[int] = []
    wait = eta_s[:, crew_of_slot] + 0.0
    for row in range(len(incidents)):
        # The closest crew with a free slot: its earliest free slot.
        options = np.where(~taken & (cost[row] < INFEASIBLE), wait[row], np.inf)
        if not np.isfinite(options).any():
            continue
        best_crew = crew_of_slot[int(np.argmin(options))]
        free_slots = np.flatnonzero((crew_of_slot == best_crew) & ~taken)
        col = int(free_slots[np.argmin(slot_rank[free_slots])])
        taken[col] = True
        rows.append(row)
        cols.append(col)
    return _plan(
        incidents, crews, eta_s, cost, crew_of_slot, slot_rank, np.array(rows), np.array(cols)
    )


def _plan(
    incidents: Sequence[BatchIncident],
    crews: Sequence[CrewState],
    eta_s: NDArray[np.float64],
    cost: NDArray[np.float64],
    crew_of_slot: NDArray[np.intp],
    slot_rank: NDArray[np.intp],
    rows: NDArray[np.intp],
    cols: NDArray[np.intp],
) -> BatchPlan:
    assignments: list[BatchAssignment] = []
    assigned_rows: set[int] = set()
    total = 0.0
    for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
        if col >= cost.shape[1] or cost[row, col] >= INFEASIBLE:
            continue
        c = int(crew_of_slot[col])
        assignments.append(
            BatchAssignment(
                incident_id=incidents[row].incident_id,
                crew_id=crews[c].crew_id,
                eta_s=round(float(eta_s[row, c]), 1),
                slot=int(slot_rank[col]),
            )
        )
        assigned_rows.add(row)
        total += float(cost[row, col])
    left = [r for r in range(len(incidents)) if r not in assigned_rows]
    penalty = sum(PRIORITY_WEIGHT.get(incidents[r].priority, 1.0) * UNASSIGNED_S for r in left)
    return BatchPlan(
        assignments,
        [incidents[r].incident_id for r in left],
        round(total, 1),
        round(total + penalty, 1),
    )
