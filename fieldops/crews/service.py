"""Crew use cases: the roster, and position fixes from crew devices."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from fieldops.crews.models import Crew, CrewStatus
from fieldops.crews.repo import add_positions, crew_by_name, known_fix_times_of, lock_crews
from fieldops.crews.spec import CrewSpec
from fieldops.db.ids import give_ids
from fieldops.errors import FieldProblem, InvalidInput, NotFound


def load_crews(
    session: Session,
    specs: Sequence[CrewSpec],
    *,
    district_ids: dict[str, int],
    now: datetime,
    timezone: str,
    roster: str = "city",
) -> tuple[int, int]:
    """Insert or update crews by name, with their current (or next) shift; (added, updated)."""
    unknown = sorted({s.district for s in specs} - set(district_ids))
    if unknown:
        raise InvalidInput.for_field("district", f"unknown district code(s): {', '.join(unknown)}")
    existing = crew_by_name(session)
    added = updated = 0
    for spec in specs:
        starts, ends = spec.shift_window(now, timezone)
        values = {
            "skills": list(spec.skills),
            "capacity": spec.capacity,
            "home_district_id": district_ids[spec.district],
            "depot_lon": spec.depot[0],
            "depot_lat": spec.depot[1],
            "shift_starts_at": starts,
            "shift_ends_at": ends,
            "roster": roster,
        }
        crew = existing.get(spec.name)
        if crew is None:
            session.add(
                Crew(
                    name=spec.name,
                    status=CrewStatus.AVAILABLE,
                    last_lon=None,
                    last_lat=None,
                    last_fix_at=None,
                    **values,
                )
            )
            added += 1
        else:
            for key, value in values.items():
                setattr(crew, key, value)
            updated += 1
    session.flush()
    return added, updated


@dataclass(frozen=True)
class Fix:
    lon: float
    lat: float
    fix_at: datetime


@dataclass(frozen=True)
class FixesOutcome:
    stored: int
    repeated: int
    moved: bool  # whether the crew's last known position changed


def record_positions(
    session: Session, crew_id: int, fixes: Sequence[Fix], *, now: datetime
) -> FixesOutcome:
    """Store a batch of fixes (in any order, possibly sent before). The crew's position
    only ever moves forward in device time; a repeated fix is stored once."""
    problems = [
        FieldProblem(f"fixes[{i}]", "lon/lat out of range or not finite")
        for i, f in enumerate(fixes)
        if not (
            math.isfinite(f.lon)
            and math.isfinite(f.lat)
            and -180 <= f.lon <= 180
            and -90 <= f.lat <= 90
        )
    ]
    problems += [
        FieldProblem(f"fixes[{i}].fix_at", "must carry a time zone")
        for i, f in enumerate(fixes)
        if f.fix_at.tzinfo is None
    ]
    if problems:
        raise InvalidInput("; ".join(f"{p.field} {p.reason}" for p in problems), problems)
    return record_fleet_positions(session, {crew_id: fixes}, now=now)[crew_id]


def record_fleet_positions(
    session: Session, fixes: Mapping[int, Sequence[Fix]], *, now: datetime
) -> dict[int, FixesOutcome]:
    """``record_positions`` for many crews at once, with a handful of statements (fixes
    already checked): the outcome by crew id. An unknown crew is NotFound."""
    crews = lock_crews(session, list(fixes))
    missing = sorted(set(fixes) - set(crews))
    if missing:
        raise NotFound(f"no crew with id {missing[0]}")
    unique = {crew_id: {f.fix_at: f for f in crew_fixes} for crew_id, crew_fixes in fixes.items()}
    # A crew's last fix is the newest it ever stored: only a fix at or before it can be a
    # repeat, so only those are looked up (a crew reporting as it goes sends none).
    maybe_sent = {
        crew_id: [at for at in by_time if last is not None and at <= last]
        for crew_id, by_time in unique.items()
        if (last := crews[crew_id].last_fix_at) is not None
    }
    already = known_fix_times_of(
        session,
        [crew_id for crew_id, times in maybe_sent.items() if times],
        sorted({at for times in maybe_sent.values() for at in times}),
    )
    outcomes: dict[int, FixesOutcome] = {}
    rows: list[dict[str, object]] = []  # the new fixes, written with one statement
    for crew_id, by_time in unique.items():
        crew = crews[crew_id]
        fresh = [f for at, f in sorted(by_time.items()) if (crew_id, at) not in already]
        rows.extend(
            {"crew_id": crew_id, "lon": f.lon, "lat": f.lat, "fix_at": f.fix_at, "received_at": now}
            for f in fresh
        )
        moved = False
        if fresh:
            newest = fresh[-1]
            if crew.last_fix_at is None or newest.fix_at > crew.last_fix_at:
                crew.last_lon, crew.last_lat = newest.lon, newest.lat
                crew.last_fix_at = newest.fix_at
                moved = True
        outcomes[crew_id] = FixesOutcome(
            stored=len(fresh), repeated=len(fixes[crew_id]) - len(fresh), moved=moved
        )
    # What the session holds new (a caller's own) goes first, with its ids; then the
    # fixes, numbered by the database in order: nothing reads them back as objects.
    give_ids(session, session.new)
    session.flush()
    add_positions(session, rows)
    return outcomes
