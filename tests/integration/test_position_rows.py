"""How ``record_fleet_positions`` writes the fixes, on both backends: as plain rows with one
statement, numbered by the database, they are the rows (ids included) that the same fixes
added as objects and flushed leave; a caller's own new fix, not yet flushed, keeps the
earlier id; and no id is looked up for them."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from statements import statements_matching

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewPosition
from fieldops.crews.service import Fix, record_fleet_positions
from fieldops.db.ids import give_ids


def positions(session: Session) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in session.execute(
            sa.select(
                CrewPosition.id,
                CrewPosition.crew_id,
                CrewPosition.lon,
                CrewPosition.lat,
                CrewPosition.fix_at,
                CrewPosition.received_at,
            ).order_by(CrewPosition.id)
        )
    ]


def writes(engine: Engine) -> contextlib.AbstractContextManager[list[str]]:
    """The statements that write fixes or look their next id up, as sent."""
    return statements_matching(
        engine,
        lambda text: (
            text.startswith("insert into crew_positions") or "max(crew_positions.id)" in text
        ),
    )


def test_fixes_written_as_rows_are_the_rows_objects_leave(
    engine: Engine, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    t = clock.now()
    with sessions() as session:
        crew_ids = list(session.scalars(sa.select(Crew.id).order_by(Crew.id).limit(3)))
    first, second, third = crew_ids
    fixes = {
        second: [Fix(-73.60, 45.50, t + timedelta(seconds=20)), Fix(-73.61, 45.51, t)],
        first: [Fix(-73.58, 45.52, t + timedelta(seconds=30))],
    }
    own = {"crew_id": third, "lon": -73.5, "lat": 45.5, "fix_at": t, "received_at": t}
    expected = [
        (third, -73.5, 45.5, t, t),
        (second, -73.61, 45.51, t, t),
        (second, -73.60, 45.50, t + timedelta(seconds=20), t),
        (first, -73.58, 45.52, t + timedelta(seconds=30), t),
    ]
    with sessions() as session:  # as objects, given their ids and flushed
        before = positions(session)
        session.add(CrewPosition(**own))
        session.add_all(
            CrewPosition(crew_id=c, lon=lon, lat=lat, fix_at=at, received_at=t)
            for c, lon, lat, at, _ in expected[1:]
        )
        give_ids(session, session.new)
        session.flush()
        as_objects = positions(session)[len(before) :]
        session.rollback()
    with sessions() as session, writes(engine) as sent:
        session.add(CrewPosition(**own))  # the caller's own, not yet flushed
        record_fleet_positions(session, fixes, now=t)
        as_rows = positions(session)[len(before) :]
        session.rollback()

    assert [row[1:] for row in as_rows] == expected
    assert [row[0] for row in as_rows] == list(range(as_rows[0][0], as_rows[0][0] + 4))
    if engine.dialect.name == "sqlite":
        assert as_rows == as_objects  # ids included
    # The caller's fix went in first, with its id; then the call's, with one statement.
    looked_up = [s for s in sent if "max(" in s]
    assert len(looked_up) == (1 if engine.dialect.name == "sqlite" else 0)
    assert len([s for s in sent if s.startswith("insert")]) == 2


def test_fixes_alone_look_no_id_up(
    engine: Engine, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session, writes(engine) as sent:
        crew_id = session.scalars(sa.select(Crew.id).order_by(Crew.id).limit(1)).one()
        fixes = [Fix(-73.6, 45.5, clock.now() + timedelta(seconds=s)) for s in (0, 10, 20)]
        record_fleet_positions(session, {crew_id: fixes}, now=clock.now())
        assert len(positions(session)) == 3
        session.rollback()
    assert len(sent) == 1 and sent[0].startswith("insert into crew_positions")


def fix_lookups(engine: Engine) -> contextlib.AbstractContextManager[list[str]]:
    """The statements that ask which fixes a crew sent before."""
    return statements_matching(
        engine,
        lambda text: text.startswith("select crew_positions.crew_id, crew_positions.fix_at"),
    )


def test_only_fixes_at_or_before_the_last_one_are_looked_up(
    engine: Engine, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    t = clock.now()
    with sessions() as session:
        crew_id = session.scalars(sa.select(Crew.id).order_by(Crew.id).limit(1)).one()
        record_fleet_positions(session, {crew_id: [Fix(-73.60, 45.50, t)]}, now=t)
        with fix_lookups(engine) as asked:
            ahead = record_fleet_positions(
                session, {crew_id: [Fix(-73.61, 45.51, t + timedelta(seconds=60))]}, now=t
            )
        assert asked == [] and (ahead[crew_id].stored, ahead[crew_id].moved) == (1, True)
        with fix_lookups(engine) as asked:
            mixed = record_fleet_positions(
                session,
                {
                    crew_id: [
                        Fix(-73.60, 45.50, t),  # sent before
                        Fix(-73.62, 45.52, t + timedelta(seconds=30)),  # late, never sent
                        Fix(-73.63, 45.53, t + timedelta(seconds=90)),  # newest
                    ]
                },
                now=t,
            )
        assert len(asked) == 1
        outcome = mixed[crew_id]
        assert (outcome.stored, outcome.repeated, outcome.moved) == (2, 1, True)
        stored = [row[4] - t for row in positions(session) if row[1] == crew_id]
        assert stored == [timedelta(seconds=s) for s in (0, 60, 30, 90)]
        crew = session.get(Crew, crew_id)
        assert crew is not None and (crew.last_lon, crew.last_fix_at) == (-73.63, stored[-1] + t)
        session.rollback()
