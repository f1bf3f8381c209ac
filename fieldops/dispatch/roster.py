"""The roster as ranking sees it: every crew's state, read in one statement.

Dispatch reads the roster at every scheduler tick (a batch round, an emergency's round, the
escalation ladder's reassignments), hundreds of crews each time. Most of what a crew row
holds is shared by many crews (a group's skill set, a shift's start and end), so the roster
is read with those columns undecoded and each distinct value is decoded once per process;
whether a crew's position is stale is decided by the statement itself. Between two reads
most crews' rows do not change: such a crew keeps the state made for it before.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.catalog.models import ServiceType
from fieldops.crews.models import Crew, CrewStatus
from fieldops.crews.repo import crew_select
from fieldops.dispatch import repo
from fieldops.dispatch.ranking import CrewState

# Decoded values by raw value, per backend; cleared when they grow past this (a roster
# reloaded shift after shift keeps bringing new shift times).
_MEMO_LIMIT = 4096
_skill_sets: dict[str, frozenset[str]] = {}
_instants: dict[tuple[str, Any], datetime] = {}
_states: dict[tuple[Any, ...], CrewState] = {}  # by the raw row it was made from


def _skills(raw: str) -> frozenset[str]:
    found = _skill_sets.get(raw)
    if found is None:
        if len(_skill_sets) >= _MEMO_LIMIT:
            _skill_sets.clear()
        found = _skill_sets[raw] = frozenset(json.loads(raw))
    return found


def _instant_decoder(dialect: sa.Dialect) -> Callable[[Any], datetime]:
    """Decodes a raw shift instant of this backend as ``UTCDateTime`` does, each once."""
    column_type = Crew.__table__.c.shift_starts_at.type
    process = column_type.dialect_impl(dialect).result_processor(dialect, None)
    backend = dialect.name

    def decode(raw: Any) -> datetime:
        key = (backend, raw)
        found = _instants.get(key)
        if found is None:
            if len(_instants) >= _MEMO_LIMIT:
                _instants.clear()
            found = process(raw) if process is not None else raw
            assert found is not None, "shift instants are never null"
            _instants[key] = found
        return found

    return decode


def skills_by_service(session: Session) -> dict[str, frozenset[str]]:
    """The skills each service of the catalogue needs, by service code (read with every
    round, decoded once)."""
    rows = session.execute(sa.select(ServiceType.code, sa.cast(ServiceType.skills, sa.Text)))
    return {code: _skills(skills) for code, skills in rows}


def crew_states(
    session: Session, *, now: datetime, stale_after: timedelta, able_only: bool = False
) -> list[CrewState]:
    """Every crew's state, by crew id (``able_only``: only the crews that can take one
    more job at ``now``: on duty, on shift, below capacity; in a storm most are not).
    Read as plain rows, not as ORM objects: a batch round reads the crews but changes only
    the few it assigns. (The flush makes the rows show what crews in the session were
    changed to, as the objects would.)"""
    session.flush()
    rows = (
        session.connection()
        .execute(_roster(able_only), {"able_at": now, "stale_before": now - stale_after})
        .all()
    )
    instant = _instant_decoder(session.get_bind().dialect)
    if len(_states) >= _MEMO_LIMIT:
        _states.clear()
    states = []
    for row in rows:
        # A crew whose row is as it was at an earlier read has the state it had then
        # (states are immutable; two backends' rows never match: their raw instants
        # differ in type). Keyed by plain tuples: they compare at C speed.
        key = tuple(row)
        state = _states.get(key)
        if state is None:
            state = _states[key] = _state(key, instant)
        states.append(state)
    return states


@functools.cache
def _roster(able_only: bool) -> sa.Select[Any]:
    """The roster's statement, built once (building it cost as much as running it):
    bound parameters ``able_at`` and ``stale_before`` (a fix older is stale)."""
    jobs = repo.active_jobs_of_crew()  # read with each crew, in the same statement
    raw = sa.types.NullType()
    stale_before = sa.bindparam("stale_before", type_=Crew.__table__.c.last_fix_at.type)
    stale = sa.or_(Crew.last_fix_at.is_(None), Crew.last_fix_at < stale_before)
    return crew_select(
        able=able_only,
        jobs=jobs if able_only else None,
        columns=(
            Crew.id,
            Crew.name,
            sa.cast(Crew.skills, sa.Text),
            Crew.capacity,
            Crew.home_district_id,
            Crew.status,
            sa.type_coerce(Crew.shift_starts_at, raw),
            sa.type_coerce(Crew.shift_ends_at, raw),
            Crew.last_lon,
            Crew.last_lat,
            Crew.depot_lon,
            Crew.depot_lat,
            stale.label("position_stale"),
            jobs.label("active_jobs"),
        ),
    )


def _state(row: tuple[Any, ...], instant: Callable[[Any], datetime]) -> CrewState:
    (
        crew_id,
        name,
        skills,
        capacity,
        home_district_id,
        status,
        starts,
        ends,
        last_lon,
        last_lat,
        depot_lon,
        depot_lat,
        position_stale,
        active_jobs,
    ) = row
    known = last_lon is not None and last_lat is not None
    return CrewState(
        crew_id=crew_id,
        name=name,
        skills=_skills(skills),
        capacity=capacity,
        active_jobs=active_jobs,
        home_district_id=home_district_id,
        on_duty=status != CrewStatus.OFF_DUTY,
        shift_starts_at=instant(starts),
        shift_ends_at=instant(ends),
        lon=last_lon if known else depot_lon,
        lat=last_lat if known else depot_lat,
        position_stale=bool(position_stale),
    )
