"""Crew ranking: hard filters, then the score the module documents, in tables of cases.

score = ETA + 900 x active/capacity + 1800 if the shift ends before ETA + 1 h
      + 600 outside the home district + 1200 if that leaves the home district uncovered
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from fieldops.dispatch.ranking import (
    CrewState,
    Recommendation,
    eligible_mask,
    last_available_in_district,
    rank_crews,
)
from fieldops.geo.routing import ROAD, STRAIGHT_LINE, Travel

NOW = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
INCIDENT_DISTRICT = 5
PUMP = frozenset({"flood_pump"})


def crew(crew_id: int, **changes: object) -> CrewState:
    """A free day-shift crew of the incident's district with a pump, 9 h left on shift."""
    base = CrewState(
        crew_id=crew_id,
        name=f"crew {crew_id}",
        skills=frozenset({"flood_pump", "sewer"}),
        capacity=1,
        active_jobs=0,
        home_district_id=INCIDENT_DISTRICT,
        on_duty=True,
        shift_starts_at=NOW - timedelta(hours=3),
        shift_ends_at=NOW + timedelta(hours=9),
        lon=-73.58,
        lat=45.52,
        position_stale=False,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def road(*seconds: float, model: str = ROAD) -> Travel:
    return Travel(np.array(seconds, dtype=float), np.array([model] * len(seconds)))


def rank(
    crews: list[CrewState], *etas: float, skills: frozenset[str] = PUMP, limit: int = 5
) -> list[Recommendation]:
    return rank_crews(
        crews, road(*etas), skills=skills, district_id=INCIDENT_DISTRICT, now=NOW, limit=limit
    )


# --- hard filters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "skills", "why_not"),
    [
        ({}, PUMP, None),
        ({}, frozenset(), None),
        ({}, frozenset({"flood_pump", "sewer"}), None),
        ({"on_duty": False}, PUMP, "off duty"),
        # Off duty is said first even when other reasons hold too.
        ({"on_duty": False, "active_jobs": 1}, PUMP, "off duty"),
        ({"shift_starts_at": NOW + timedelta(hours=1)}, PUMP, "not on shift"),
        ({"shift_ends_at": NOW}, PUMP, "not on shift"),  # the end is exclusive
        ({"shift_starts_at": NOW}, PUMP, None),  # the start is inclusive
        ({"shift_ends_at": NOW - timedelta(minutes=1)}, PUMP, "not on shift"),
        ({"active_jobs": 1}, PUMP, "at capacity"),
        ({"active_jobs": 2, "capacity": 2}, PUMP, "at capacity"),
        ({"active_jobs": 1, "capacity": 2}, PUMP, None),
        ({}, frozenset({"tree_care"}), "lacks tree_care"),
        ({}, frozenset({"tree_care", "flood_pump", "roads"}), "lacks roads, tree_care"),
        ({"active_jobs": 1}, frozenset({"tree_care"}), "at capacity"),
    ],
)
def test_can_take(changes: dict[str, object], skills: frozenset[str], why_not: str | None) -> None:
    assert crew(1, **changes).can_take(skills, NOW) == why_not


@pytest.mark.parametrize(
    "excluded",
    [
        {"skills": frozenset({"tree_care"})},
        {"on_duty": False},
        {"shift_starts_at": NOW + timedelta(minutes=5)},
        {"shift_ends_at": NOW - timedelta(hours=1)},
        {"active_jobs": 2, "capacity": 2},
    ],
)
def test_a_crew_that_cannot_take_the_job_is_never_ranked_however_close(
    excluded: dict[str, object],
) -> None:
    crews = [crew(1, **excluded), crew(2)]

    ranked = rank(crews, 10.0, 2000.0)

    assert [r.crew_id for r in ranked] == [2]
    assert eligible_mask(crews, PUMP, NOW).tolist() == [False, True]


def test_no_eligible_crew_gives_an_empty_list() -> None:
    assert rank([crew(1, on_duty=False), crew(2, active_jobs=1)], 60.0, 60.0) == []


# --- the score -----------------------------------------------------------------------------

# Each case: crews (with their ETAs) and the order and scores the documented formula gives.
SCORE_CASES = {
    "lower ETA wins all else equal": (
        [(crew(1), 600.0), (crew(2), 300.0), (crew(3), 450.0)],
        [(2, 300.0), (3, 450.0), (1, 600.0)],
    ),
    "equal scores: lower crew id first": (
        [(crew(7), 300.0), (crew(3), 300.0)],
        [(3, 300.0), (7, 300.0)],
    ),
    "workload: half-busy costs 450 s and loses to a free crew 400 s further": (
        [(crew(1, capacity=2, active_jobs=1), 100.0), (crew(2), 500.0)],
        [(2, 500.0), (1, 550.0)],
    ),
    "workload: a third busy (300 s) still wins over 400 s further": (
        [(crew(1, capacity=3, active_jobs=1), 100.0), (crew(2), 500.0)],
        [(1, 400.0), (2, 500.0)],
    ),
    "district: outside its district costs 600 s": (
        # Crew 3 keeps crew 1's home district covered, so only the 600 s apply.
        [
            (crew(1, home_district_id=9), 100.0),
            (crew(2), 650.0),
            (crew(3, home_district_id=9, skills=frozenset({"roads"})), 50.0),
        ],
        [(2, 650.0), (1, 700.0)],
    ),
    "district: 600 s is not enough to beat a crew far closer": (
        [
            (crew(1, home_district_id=9), 100.0),
            (crew(2), 750.0),
            (crew(3, home_district_id=9, skills=frozenset({"roads"})), 50.0),
        ],
        [(1, 700.0), (2, 750.0)],
    ),
    "short shift: ends before ETA + 1 h costs 1800 s": (
        [(crew(1, shift_ends_at=NOW + timedelta(minutes=30)), 100.0), (crew(2), 1500.0)],
        [(2, 1500.0), (1, 1900.0)],
    ),
    "short shift: ending exactly at ETA + 1 h is not short": (
        [(crew(1, shift_ends_at=NOW + timedelta(seconds=3700)), 100.0), (crew(2), 1500.0)],
        [(1, 100.0), (2, 1500.0)],
    ),
    "short shift: one second less is": (
        [(crew(1, shift_ends_at=NOW + timedelta(seconds=3699)), 100.0), (crew(2), 1500.0)],
        [(2, 1500.0), (1, 1900.0)],
    ),
    "last free crew of its district: 600 + 1200 s": (
        # Crew 1 is the only free crew of district 9; crew 2's district 8 keeps crew 3.
        [
            (crew(1, home_district_id=9), 100.0),
            (crew(2, home_district_id=8), 1000.0),
            (crew(3, home_district_id=8, skills=frozenset({"roads"})), 50.0),
        ],
        [(2, 1600.0), (1, 1900.0)],
    ),
    "a busy district mate does not cover the district": (
        [
            (crew(1, home_district_id=9), 100.0),
            (crew(2, home_district_id=9, capacity=2, active_jobs=1), 1000.0),
        ],
        [(1, 1900.0), (2, 2050.0)],
    ),
    "an off-duty district mate does not cover the district": (
        [
            (crew(1, home_district_id=9), 100.0),
            (crew(2, home_district_id=9, on_duty=False), 10.0),
            (crew(3), 1850.0),
        ],
        [(3, 1850.0), (1, 1900.0)],
    ),
    "the last free crew of the incident's own district pays nothing": (
        [(crew(1), 100.0), (crew(2, home_district_id=9), 100.0)],
        [(1, 100.0), (2, 1900.0)],
    ),
    "every penalty at once": (
        [
            (
                crew(
                    1,
                    home_district_id=9,
                    capacity=2,
                    active_jobs=1,
                    shift_ends_at=NOW + timedelta(minutes=20),
                ),
                120.0,
            ),
        ],
        # 120 + 450 + 1800 + 600 (crew 1 is busy, so not the district's last *free* crew).
        [(1, 2970.0)],
    ),
}


@pytest.mark.parametrize(("crews", "expected"), list(SCORE_CASES.values()), ids=list(SCORE_CASES))
def test_score_and_order(
    crews: list[tuple[CrewState, float]], expected: list[tuple[int, float]]
) -> None:
    ranked = rank([c for c, _ in crews], *(eta for _, eta in crews))

    assert [(r.crew_id, r.score_s) for r in ranked] == expected


def test_limit_keeps_the_best() -> None:
    crews = [crew(i) for i in range(1, 8)]

    ranked = rank(crews, 700, 600, 500, 400, 300, 200, 100, limit=3)

    assert [r.crew_id for r in ranked] == [7, 6, 5]


def test_last_available_in_district() -> None:
    crews = [
        crew(1, home_district_id=1),
        crew(2, home_district_id=2),
        crew(3, home_district_id=2),
        crew(4, home_district_id=3),
        crew(5, home_district_id=3, active_jobs=1),
        crew(6, home_district_id=4, on_duty=False),
        crew(7, home_district_id=5, shift_starts_at=NOW + timedelta(hours=1)),
        crew(8, home_district_id=5),
    ]

    assert last_available_in_district(crews, NOW) == {1, 4, 8}


# --- what a recommendation says ------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "eta", "model", "reason"),
    [
        (
            {},
            150.0,
            ROAD,
            "ETA 2 min by road; 0/1 jobs; 9.0 h left on shift; home district",
        ),
        (
            {"capacity": 3, "active_jobs": 2, "shift_ends_at": NOW + timedelta(minutes=45)},
            1260.0,
            STRAIGHT_LINE,
            "ETA 21 min by straight line; 2/3 jobs; only 0.8 h left on shift; home district",
        ),
        (
            {"home_district_id": 9},
            29.0,
            ROAD,
            "ETA 0 min by road; 0/1 jobs; 9.0 h left on shift; outside its district; "
            "last free crew of its district",
        ),
        (
            {"position_stale": True},
            600.0,
            STRAIGHT_LINE,
            "ETA 10 min by straight line; 0/1 jobs; 9.0 h left on shift; home district; "
            "position stale",
        ),
    ],
)
def test_reason_says_eta_minutes_model_and_each_factor(
    changes: dict[str, object], eta: float, model: str, reason: str
) -> None:
    crews = [crew(1, **changes)]

    (best,) = rank_crews(
        crews, road(eta, model=model), skills=PUMP, district_id=INCIDENT_DISTRICT, now=NOW
    )

    assert best.reason == reason
    assert best.eta_s == eta
    assert best.travel_model == model
    assert best.position_stale is changes.get("position_stale", False)
    assert best.name == "crew 1"


def test_eta_and_score_are_rounded_to_a_tenth_of_a_second() -> None:
    (best,) = rank([crew(1, capacity=3, active_jobs=1)], 123.456)

    assert (best.eta_s, best.score_s) == (123.5, 423.5)


def test_a_stale_position_is_flagged_but_not_penalised() -> None:
    ranked = rank([crew(1, position_stale=True), crew(2)], 100.0, 200.0)

    assert [(r.crew_id, r.position_stale, r.score_s) for r in ranked] == [
        (1, True, 100.0),
        (2, False, 200.0),
    ]
