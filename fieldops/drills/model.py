"""What a drill run is asked for and what it gives back: options, simulated crews, results."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

import pandas as pd

from fieldops.drills.replay import ReplayCounts
from fieldops.drills.spec import Scenario
from fieldops.drills.world import Arrival

ACTOR = "drill"
STALE_AFTER = timedelta(minutes=5)
Strategy = Literal["optimal", "greedy"]


@dataclass(frozen=True)
class DrillOptions:
    seed: int | None = None  # None: the scenario's
    scale: float = 1.0  # multiplies every arrival rate (and the replayed rows)
    crew_scale: float = 1.0  # multiplies every crew group's count (at least one crew each)
    duration_h: float | None = None  # None: the scenario's
    strategy: Strategy = "optimal"


@dataclass
class CrewSim:
    """One simulated crew: where it is, what it holds, when it was busy."""

    crew_id: int
    name: str
    lon: float
    lat: float
    queue: list[int] = field(default_factory=list)  # accepted assignment ids, in order
    current: int | None = None
    broken: bool = False
    busy: list[tuple[float, float]] = field(default_factory=list)  # [start, end) seconds
    busy_since: float | None = None


@dataclass
class DrillResult:
    scenario: Scenario
    strategy: Strategy
    seed: int
    scale: float
    crew_scale: float
    start: datetime
    end: datetime
    timezone: str
    arrivals: list[Arrival]
    replay: ReplayCounts
    reports_submitted: int
    reports_merged: int
    reports_rejected: int
    initial_priority: dict[int, int]
    timeline: pd.DataFrame
    tracks: pd.DataFrame  # crew_id, crew, lon, lat, fix_at: every position fix, in order
    crews: list[CrewSim]
    escalations: Counter[str]
    escalations_by_status: Counter[str]
    notifications: list[dict[str, Any]]
    sent: list[tuple[str, str]]  # what the drill's sender delivered: (recipient, subject)
    roster: frozenset[str]
    stranded: list[int]
    refused_steps: int  # crews' steps the service refused (the fleet follows its rules: 0)
    db_url: str
    # Wall seconds by part of the work (intake, crews, dispatch...): for profiling only,
    # never in report.json, whose figures depend on the scenario and the seed alone.
    timings_s: dict[str, float] = field(default_factory=dict)
