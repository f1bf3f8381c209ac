"""The roster as ranking reads it (``crew_states``), on both backends: one statement gives
every crew the state its ORM row gives it (``crew_state``), shared skill sets and shift
times decoded once, staleness decided in SQL to the microsecond, and ``able_only`` keeps
exactly the crews that can take one more job."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from assignments import pending_assignment
from roster_reference import roster_from_orm
from sqlalchemy.orm import Session
from statements import counting_statements

from fieldops.catalog.repo import list_service_types
from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewStatus
from fieldops.db.ids import give_ids
from fieldops.dispatch.ranking import CrewState
from fieldops.dispatch.roster import crew_states, skills_by_service
from fieldops.errors import FieldOpsError
from fieldops.incidents.models import Channel
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import Submission, submit_many

STALE = timedelta(minutes=5)


def from_orm(session: Session, *, now: datetime, able_only: bool = False) -> list[CrewState]:
    return roster_from_orm(session, now=now, stale_after=STALE, able_only=able_only)


def test_the_roster_read_gives_every_crew_the_state_of_its_row(
    session: Session, clock: ManualClock
) -> None:
    now = clock.now()
    crews = session.scalars(sa.select(Crew).order_by(Crew.id)).all()
    assert len(crews) >= 8
    a, b, c, d, e, f, g, h = crews[:8]
    # Positions: never fixed, fixed exactly at the stale limit, a microsecond past it, fresh.
    a.last_lon = a.last_lat = a.last_fix_at = None
    b.last_lon, b.last_lat, b.last_fix_at = -73.6, 45.5, now - STALE
    c.last_lon, c.last_lat, c.last_fix_at = -73.61, 45.51, now - STALE - timedelta(microseconds=1)
    d.last_lon, d.last_lat, d.last_fix_at = -73.62, 45.52, now - timedelta(seconds=3)
    e.last_lon, e.last_lat, e.last_fix_at = None, 45.53, now  # half a fix: the depot counts
    f.status = CrewStatus.OFF_DUTY
    g.shift_starts_at, g.shift_ends_at = now + timedelta(hours=1), now + timedelta(hours=9)
    h.shift_starts_at, h.shift_ends_at = now - timedelta(hours=8), now  # ends right now
    # One crew full, one with a job to spare.
    d.capacity, e.capacity = 1, 2
    session.flush()

    got = crew_states(session, now=now, stale_after=STALE)
    assert got == from_orm(session, now=now)
    by_id = {s.crew_id: s for s in got}
    assert by_id[a.id].position_stale and by_id[c.id].position_stale
    assert not by_id[b.id].position_stale and not by_id[d.id].position_stale
    assert (by_id[e.id].lon, by_id[e.id].lat) == (e.depot_lon, e.depot_lat)
    assert (by_id[d.id].lon, by_id[d.id].lat) == (-73.62, 45.52)
    # The decoded values are the row's, however many crews share them.
    assert all(s.shift_starts_at.tzinfo is not None for s in got)
    assert [sorted(s.skills) for s in got] == [sorted(c.skills) for c in crews]
    able = crew_states(session, now=now, stale_after=STALE, able_only=True)
    assert able == from_orm(session, now=now, able_only=True)
    assert {f.id, g.id, h.id}.isdisjoint(s.crew_id for s in able)


def test_a_later_read_follows_every_change_since_the_last(
    session: Session, clock: ManualClock
) -> None:
    now = clock.now()
    first = crew_states(session, now=now, stale_after=STALE)
    assert first == from_orm(session, now=now)
    crews = session.scalars(sa.select(Crew).order_by(Crew.id)).all()
    crews[0].capacity += 1
    crews[1].last_lon, crews[1].last_lat, crews[1].last_fix_at = -73.7, 45.6, now
    crews[2].skills = [*crews[2].skills, "chainsaw"]
    session.flush()
    later = now + STALE + timedelta(seconds=1)  # the fix just made goes stale
    for at in (now, later):
        assert crew_states(session, now=at, stale_after=STALE) == from_orm(session, now=at)


def test_a_crew_at_capacity_is_left_out_of_the_able_roster(
    session: Session, clock: ManualClock
) -> None:
    now = clock.now()
    crew = session.scalars(
        sa.select(Crew).where(Crew.status != CrewStatus.OFF_DUTY).order_by(Crew.id)
    ).first()
    assert crew is not None
    crew.capacity = 1
    crew.shift_starts_at, crew.shift_ends_at = now - timedelta(hours=1), now + timedelta(hours=1)
    session.flush()
    before = {s.crew_id for s in crew_states(session, now=now, stale_after=STALE, able_only=True)}
    assert crew.id in before
    (opened,) = submit_many(
        session,
        [
            Submission(
                NewReport(
                    service_code="flooding", lon=-73.857, lat=45.48, channel=Channel.DISPATCHER
                ),
                "test",
                now,
            )
        ],
        context=IntakeContext.load(session),
    )
    assert not isinstance(opened, FieldOpsError)
    job = pending_assignment(opened.incident.id, crew.id, now)
    session.add(job)
    give_ids(session, [job])
    session.flush()
    after = crew_states(session, now=now, stale_after=STALE, able_only=True)
    assert crew.id not in {s.crew_id for s in after}
    assert after == from_orm(session, now=now, able_only=True)
    full = {s.crew_id: s for s in crew_states(session, now=now, stale_after=STALE)}
    assert full[crew.id].active_jobs == 1


def test_the_roster_is_one_statement_however_many_crews(
    session: Session, clock: ManualClock
) -> None:
    session.connection()  # the transaction is begun
    engine = session.get_bind()
    states = crew_states(session, now=clock.now(), stale_after=STALE)
    assert len(states) >= 8
    with counting_statements(engine) as sent:  # type: ignore[arg-type]
        assert crew_states(session, now=clock.now(), stale_after=STALE) == states
    # SpatiaLite: the stamps alone, every crew being kept since the first read
    # (tests/integration/test_kept_roster.py); PostGIS: the roster.
    assert sent[0] == 1


def test_the_catalogue_skills_are_those_of_each_service(session: Session) -> None:
    expected = {s.code: frozenset(s.skills) for s in list_service_types(session)}
    assert skills_by_service(session) == expected
    assert expected["flooding"] == frozenset({"flood_pump"})
