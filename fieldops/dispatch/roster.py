"""The roster as ranking sees it: every crew's state, read in one statement.

Dispatch reads the roster at every scheduler tick (a batch round, an emergency's round, the
escalation ladder's reassignments), hundreds of crews each time. Most of what a crew row
holds is shared by many crews (a group's skill set, a shift's start and end), so the roster
is read with those columns undecoded and each distinct value is decoded once per process;
whether a crew's position is stale is decided by the statement itself (on PostGIS; see
below for SpatiaLite). Between two reads most crews' rows do not change: such a crew keeps
the state made for it before.

On SpatiaLite the roster is kept between reads: a read lists each crew's stamp, which the
database draws anew at every change of the crew or of its assignments, and reads again
only the crews whose stamp changed (``_KeptRoster``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
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
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        kept: _KeptRoster = connection.info.setdefault(_KEPT, _KeptRoster())
        return kept.states(connection, now=now, stale_before=now - stale_after, able_only=able_only)
    rows = connection.execute(
        _roster(able_only), {"able_at": now, "stale_before": now - stale_after}
    ).all()
    instant = _instant_decoder(connection.dialect)
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
    stale_before = sa.bindparam("stale_before", type_=Crew.__table__.c.last_fix_at.type)
    stale = sa.or_(Crew.last_fix_at.is_(None), Crew.last_fix_at < stale_before)
    return crew_select(
        able=able_only, jobs=jobs if able_only else None, columns=_columns(stale, jobs)
    )


def _columns(stale: sa.ColumnElement[bool], jobs: sa.ScalarSelect[int]) -> list[Any]:
    """A roster row's columns, as ``_state`` takes them."""
    raw = sa.types.NullType()
    return [
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
    ]


# --- SpatiaLite: the roster kept between reads, by stamp -----------------------------------

# Where a database connection keeps its roster (``Connection.info``: it lives as long as
# the connection, and a connection only ever sees its own database).
_KEPT = "fieldops.roster.kept"


@dataclass(frozen=True)
class _Kept:
    """A crew as its row with stamp ``stamp`` gives it: its state with a fresh position
    and with a stale one (which applies depends on the read's instant)."""

    stamp: int
    last_fix_at: datetime | None
    fresh: CrewState
    stale: CrewState


class _KeptRoster:
    """Every crew's state as last read through one connection, by crew id. A read lists
    every crew's stamp (``roster_stamp``, drawn anew by the database at every change of
    the crew or of its assignments, migration 0008) and reads again only the crews whose
    stamp changed, or that it has never seen: in a tick most crews have not changed."""

    def __init__(self) -> None:
        self.crews: dict[int, _Kept] = {}

    def states(
        self, connection: sa.Connection, *, now: datetime, stale_before: datetime, able_only: bool
    ) -> list[CrewState]:
        stamps = connection.execute(_STAMPS).all()
        crews = self.crews
        changed = []
        for crew_id, stamp in stamps:
            kept = crews.get(crew_id)
            if kept is None or kept.stamp != stamp:
                changed.append(crew_id)
        if changed:
            self._read(connection, changed)
        if len(crews) > len(stamps):  # crews deleted since
            listed = {crew_id for crew_id, _ in stamps}
            for crew_id in crews.keys() - listed:
                del crews[crew_id]
        states = []
        for crew_id, _stamp in stamps:
            kept = crews[crew_id]
            last_fix_at = kept.last_fix_at
            state = kept.stale if last_fix_at is None or last_fix_at < stale_before else kept.fresh
            # Able: what the statement's ``able`` filter keeps (``crews.repo.crew_select``).
            if able_only and state.can_take(_NO_SKILLS, now) is not None:
                continue
            states.append(state)
        return states

    def _read(self, connection: sa.Connection, crew_ids: list[int]) -> None:
        instant = _instant_decoder(connection.dialect)
        for start in range(0, len(crew_ids), _CHUNK):
            rows = connection.execute(_stamped(), {"ids": crew_ids[start : start + _CHUNK]})
            for stamp, last_fix_at, *columns in rows:
                fresh = _state(tuple(columns), instant)
                self.crews[fresh.crew_id] = _Kept(
                    stamp, last_fix_at, fresh, replace(fresh, position_stale=True)
                )


_NO_SKILLS: frozenset[str] = frozenset()
_CHUNK = 500  # crews read by one statement (SQLite caps a statement's parameters)
_STAMPS = sa.text("SELECT id, roster_stamp FROM crews ORDER BY id")


@functools.cache
def _stamped() -> sa.Select[Any]:
    """The changed crews' rows: their stamp and fix instant, then the roster's columns but
    staleness (which the read decides for its own instant)."""
    # A constant in staleness's place: the kept states are made for both answers.
    columns = _columns(sa.false(), repo.active_jobs_of_crew())
    return (
        sa.select(sa.literal_column("crews.roster_stamp"), Crew.last_fix_at, *columns)
        .where(Crew.id.in_(sa.bindparam("ids", expanding=True)))
        .order_by(Crew.id)
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
