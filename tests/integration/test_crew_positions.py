"""Position fixes for many crews at once (``record_fleet_positions``), on both backends:
what one call stores and moves is what a call per crew would have, repeats included."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewPosition
from fieldops.crews.service import Fix, record_fleet_positions, record_positions
from fieldops.errors import NotFound


def fixes_for(clock: ManualClock, crew_ids: list[int]) -> dict[int, list[Fix]]:
    t = clock.now()
    first, second = crew_ids[:2]
    return {
        # Out of order, one repeated, one older than the newest.
        first: [
            Fix(-73.58, 45.52, t + timedelta(seconds=30)),
            Fix(-73.57, 45.53, t + timedelta(seconds=60)),
            Fix(-73.58, 45.52, t + timedelta(seconds=30)),
            Fix(-73.59, 45.51, t),
        ],
        second: [Fix(-73.60, 45.50, t + timedelta(seconds=10))],
    }


def state(session: Session, crew_ids: list[int]) -> tuple[object, ...]:
    session.flush()
    crews = session.scalars(sa.select(Crew).where(Crew.id.in_(crew_ids)).order_by(Crew.id))
    positions = session.execute(
        sa.select(CrewPosition.crew_id, CrewPosition.lon, CrewPosition.lat, CrewPosition.fix_at)
        .where(CrewPosition.crew_id.in_(crew_ids))
        .order_by(CrewPosition.crew_id, CrewPosition.fix_at)
    ).all()
    return [(c.id, c.last_lon, c.last_lat, c.last_fix_at) for c in crews], list(positions)


def test_many_crews_at_once_as_one_crew_after_the_other(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        crew_ids = list(session.scalars(sa.select(Crew.id).order_by(Crew.id).limit(2)))
    fixes = fixes_for(clock, crew_ids)
    with sessions() as session:
        alone = {c: record_positions(session, c, f, now=clock.now()) for c, f in fixes.items()}
        expected = state(session, crew_ids)
        session.rollback()
    with sessions() as session:
        together = record_fleet_positions(session, fixes, now=clock.now())
        # Sent again: everything is a repeat, and nobody moves.
        again = record_fleet_positions(session, fixes, now=clock.now())
        got = state(session, crew_ids)
        session.rollback()

    assert together == alone
    assert (together[crew_ids[0]].stored, together[crew_ids[0]].repeated) == (3, 1)
    assert all(o.moved for o in together.values())
    assert all(o.stored == 0 and not o.moved for o in again.values())
    assert got == expected
    crews, positions = got
    assert crews[0][1:3] == (-73.57, 45.53)  # the newest fix, not the last one sent
    assert len(positions) == 4


def test_an_unknown_crew_stores_nothing(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        known = session.scalars(sa.select(Crew.id).limit(1)).one()
        with pytest.raises(NotFound):
            record_fleet_positions(
                session,
                {known: [Fix(-73.58, 45.52, clock.now())], 10_000: [Fix(-73.6, 45.5, clock.now())]},
                now=clock.now(),
            )
        session.flush()  # whatever the call left in the session, written
        assert session.scalar(sa.select(sa.func.count()).select_from(CrewPosition)) == 0
