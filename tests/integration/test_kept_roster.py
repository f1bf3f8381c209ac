"""The roster kept between reads on SpatiaLite (``fieldops.dispatch.roster._KeptRoster``):
whatever changes a crew or its assignments, by whichever path (the ORM, a plain
statement, a transaction rolled back), the next read is what a full read gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from assignments import pending_assignment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from incidents import flooding_incident
from roster_reference import roster_from_orm
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from statements import counting_statements

from fieldops.crews.models import Crew, CrewStatus
from fieldops.db.ids import give_ids
from fieldops.db.updates import ChangesSession
from fieldops.dispatch.models import Assignment
from fieldops.dispatch.roster import crew_states
from fieldops.incidents.models import Incident

NOW = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
STALE = timedelta(minutes=5)
CREWS = 6  # the crews the changes touch (the roster read holds every crew)


def _read(session: Session, at: datetime, *, able_only: bool = False) -> list[Any]:
    return crew_states(session, now=at, stale_after=STALE, able_only=able_only)


def _expected(session: Session, at: datetime, *, able_only: bool = False) -> list[Any]:
    session.expire_all()  # plain statements changed rows behind the objects
    return roster_from_orm(session, now=at, stale_after=STALE, able_only=able_only)


def _incident(session: Session) -> Incident:
    incident = flooding_incident(session, lon=-73.58, reported_at=NOW, now=NOW)
    session.add(incident)
    give_ids(session, [incident])
    session.flush()
    return incident


def test_the_triggers_that_draw_the_stamps_are_in_place(spatialite_engine: Engine) -> None:
    # A later migration that rebuilds crews or assignments (a batch ALTER copies the
    # table) drops their triggers with them, and kept rosters would go stale silently.
    with spatialite_engine.connect() as connection:
        triggers = {
            (name, table)
            for name, table in connection.execute(
                sa.text("SELECT name, tbl_name FROM sqlite_master WHERE type = 'trigger'")
            )
        }
        columns = {row[1] for row in connection.execute(sa.text("PRAGMA table_info(crews)"))}
    assert {
        ("crews_stamp_on_insert", "crews"),
        ("crews_stamp_on_update", "crews"),
        ("assignments_stamp_on_insert", "assignments"),
        ("assignments_stamp_on_update", "assignments"),
        ("assignments_stamp_on_delete", "assignments"),
    } <= triggers
    assert "roster_stamp" in columns


def test_a_read_with_nothing_changed_is_one_statement_and_a_change_reads_that_crew(
    spatialite_session: Session, spatialite_engine: Engine
) -> None:
    first = _read(spatialite_session, NOW)
    assert first == _expected(spatialite_session, NOW)
    with counting_statements(spatialite_engine) as sent:
        assert _read(spatialite_session, NOW) == first
    assert sent[0] == 1  # the stamps alone
    crew_id = first[2].crew_id
    # A plain statement, not the ORM: the database's triggers draw the new stamp.
    spatialite_session.execute(
        sa.text("UPDATE crews SET capacity = capacity + 4 WHERE id = :id"), {"id": crew_id}
    )
    with counting_statements(spatialite_engine) as sent:
        again = _read(spatialite_session, NOW)
    assert sent[0] == 2  # the stamps, then the one crew whose stamp changed
    assert again == _expected(spatialite_session, NOW)
    assert again[2].capacity == first[2].capacity + 4


def test_a_change_rolled_back_is_not_kept_nor_mistaken_for_a_later_one(
    spatialite_engine: Engine,
) -> None:
    # One connection throughout: it keeps the roster the reads below share.
    with spatialite_engine.connect() as connection:
        session = ChangesSession(bind=connection, autoflush=False, expire_on_commit=False)
        crew = session.scalars(sa.select(Crew).order_by(Crew.id).limit(1)).one()
        stored = crew.capacity
        before = _read(session, NOW)
        crew.capacity = stored + 1
        session.flush()
        assert _read(session, NOW)[0].capacity == stored + 1  # kept, then rolled back
        session.rollback()
        # Another change of the same crew, right away: the stamp drawn for it must not be
        # the one the rolled-back row had (a counter would give the same number again).
        crew.capacity = stored + 2
        session.flush()
        assert _read(session, NOW) == _expected(session, NOW)
        assert _read(session, NOW)[0].capacity == stored + 2
        session.rollback()
        assert _read(session, NOW) == before
        session.rollback()
        session.close()


# --- any changes, any order -------------------------------------------------------------

_STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("status"), st.integers(0, CREWS - 1), st.sampled_from(list(CrewStatus))),
        st.tuples(st.just("fix"), st.integers(0, CREWS - 1), st.integers(-900, 60)),
        st.tuples(st.just("capacity"), st.integers(0, CREWS - 1), st.integers(1, 3)),
        st.tuples(st.just("shift"), st.integers(0, CREWS - 1), st.integers(-10, 2)),
        st.tuples(st.just("plain"), st.integers(0, CREWS - 1), st.sampled_from(["a", "b"])),
        st.tuples(st.just("assign"), st.integers(0, CREWS - 1), st.just(0)),
        st.tuples(st.just("end"), st.integers(0, 7), st.just(0)),
        st.tuples(st.just("move"), st.integers(0, 7), st.integers(0, CREWS - 1)),
        st.tuples(st.just("delete"), st.integers(0, 7), st.just(0)),
        st.tuples(st.just("read"), st.integers(0, 900), st.booleans()),
    ),
    max_size=25,
)


def _apply(session: Session, crews: list[Crew], incident: Incident, step: tuple[Any, ...]) -> None:
    kind, n, value = step
    jobs = list(session.scalars(sa.select(Assignment).order_by(Assignment.id)))
    if kind == "status":
        crews[n].status = value
    elif kind == "fix":
        crews[n].last_lon, crews[n].last_lat = -73.6, 45.5
        crews[n].last_fix_at = NOW + timedelta(seconds=value)
    elif kind == "capacity":
        crews[n].capacity = value
    elif kind == "shift":
        crews[n].shift_starts_at = NOW + timedelta(hours=value)
        crews[n].shift_ends_at = crews[n].shift_starts_at + timedelta(hours=8)
    elif kind == "plain":  # behind the ORM's back
        session.execute(
            sa.text("UPDATE crews SET name = name || :suffix WHERE id = :id"),
            {"suffix": value, "id": crews[n].id},
        )
    elif kind == "assign":
        job = pending_assignment(incident.id, crews[n].id, NOW)
        session.add(job)
        give_ids(session, [job])
    elif jobs and kind == "end":
        jobs[n % len(jobs)].is_active = False
    elif jobs and kind == "move":
        jobs[n % len(jobs)].crew_id = crews[value].id
    elif jobs and kind == "delete":
        session.delete(jobs[n % len(jobs)])
    session.flush()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=_STEPS)
def test_every_read_is_a_full_read_whatever_changed_before(
    spatialite_sessions: sessionmaker[Session], steps: list[tuple[Any, ...]]
) -> None:
    with spatialite_sessions() as session:
        crews = list(session.scalars(sa.select(Crew).order_by(Crew.id).limit(CREWS)))
        incident = _incident(session)
        _read(session, NOW)  # kept before the changes: each read after must see them
        for step in [*steps, ("read", 0, False), ("read", 0, True)]:
            if step[0] == "read":
                at = NOW + timedelta(seconds=step[1])
                assert _read(session, at, able_only=step[2]) == _expected(
                    session, at, able_only=step[2]
                )
            else:
                _apply(session, crews, incident, step)
        session.rollback()
