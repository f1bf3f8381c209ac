"""Which crew for this incident: hard filters, then a documented score. Pure: no database.

The score is in seconds of "effective response time", lower is better:

    score = ETA
          + 900 s x (active jobs / capacity)                 workload
          + 1800 s if the shift ends before ETA + one hour   time left on shift
          + 600 s if the incident is outside the crew's home district
          + 1200 s if the crew is the last available one of its home district and
                   the incident lies elsewhere (the district would be left uncovered)

Required skills, being on shift, not off duty and a free slot are hard filters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from fieldops.geo.routing import Travel

WORKLOAD_S = 900.0
SHORT_SHIFT_S = 1800.0
SHIFT_MARGIN = timedelta(hours=1)
OUT_OF_DISTRICT_S = 600.0
UNCOVERED_DISTRICT_S = 1200.0


@dataclass(frozen=True)
class CrewState:
    """What ranking needs to know of one crew at one instant."""

    crew_id: int
    name: str
    skills: frozenset[str]
    capacity: int
    active_jobs: int
    home_district_id: int
    on_duty: bool  # not off duty
    shift_starts_at: datetime
    shift_ends_at: datetime
    lon: float
    lat: float
    position_stale: bool

    def can_take(self, skills: frozenset[str], now: datetime) -> str | None:
        """None when the crew may take a job needing ``skills`` now, else why not."""
        if not self.on_duty:
            return "off duty"
        if not self.shift_starts_at <= now < self.shift_ends_at:
            return "not on shift"
        if self.active_jobs >= self.capacity:
            return "at capacity"
        missing = skills - self.skills
        if missing:
            return f"lacks {', '.join(sorted(missing))}"
        return None


@dataclass(frozen=True)
class Recommendation:
    crew_id: int
    name: str
    score_s: float
    eta_s: float
    travel_model: str
    reason: str
    position_stale: bool


def last_available_in_district(crews: Sequence[CrewState], now: datetime) -> set[int]:
    """Crews that are the only free one of their home district."""
    free: dict[int, list[int]] = {}
    for crew in crews:
        if (
            crew.on_duty
            and crew.shift_starts_at <= now < crew.shift_ends_at
            and crew.active_jobs == 0
        ):
            free.setdefault(crew.home_district_id, []).append(crew.crew_id)
    return {ids[0] for ids in free.values() if len(ids) == 1}


def rank_crews(
    crews: Sequence[CrewState],
    travel: Travel,
    *,
    skills: frozenset[str],
    district_id: int,
    now: datetime,
    limit: int = 5,
) -> list[Recommendation]:
    """The best ``limit`` crews for a job, best first; ``travel`` is aligned with ``crews``."""
    lonely = last_available_in_district(crews, now)
    ranked: list[Recommendation] = []
    for i, crew in enumerate(crews):
        if crew.can_take(skills, now) is not None:
            continue
        eta = float(travel.seconds[i])
        parts = [f"ETA {eta / 60:.0f} min by {str(travel.model[i]).replace('_', ' ')}"]
        score = eta + WORKLOAD_S * crew.active_jobs / crew.capacity
        parts.append(f"{crew.active_jobs}/{crew.capacity} jobs")
        left = crew.shift_ends_at - now
        if left < timedelta(seconds=eta) + SHIFT_MARGIN:
            score += SHORT_SHIFT_S
            parts.append(f"only {left.total_seconds() / 3600:.1f} h left on shift")
        else:
            parts.append(f"{left.total_seconds() / 3600:.1f} h left on shift")
        if crew.home_district_id == district_id:
            parts.append("home district")
        else:
            score += OUT_OF_DISTRICT_S
            parts.append("outside its district")
            if crew.crew_id in lonely:
                score += UNCOVERED_DISTRICT_S
                parts.append("last free crew of its district")
        if crew.position_stale:
            parts.append("position stale")
        ranked.append(
            Recommendation(
                crew_id=crew.crew_id,
                name=crew.name,
                score_s=round(score, 1),
                eta_s=round(eta, 1),
                travel_model=str(travel.model[i]),
                reason="; ".join(parts),
                position_stale=crew.position_stale,
            )
        )
    ranked.sort(key=lambda r: (r.score_s, r.crew_id))
    return ranked[:limit]


def eligible_mask(crews: Sequence[CrewState], skills: frozenset[str], now: datetime) -> np.ndarray:
    return np.array([crew.can_take(skills, now) is None for crew in crews], dtype=bool)
