"""Events gathered as plain rows and written with one statement (``record_event(rows=...)``,
``write_events``), on both backends: the log is the one the same events written as objects
by a flush leave, in the same order and numbering, a caller's own pending event first; a
batch of crews' steps and a batch round write their whole log with one INSERT and look no
id up for it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from floods import open_floods, travel_model
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from statements import statements_matching

from fieldops.clock import ManualClock
from fieldops.db.engine import unit_of_work
from fieldops.db.ids import give_ids
from fieldops.dispatch.crew_steps import CrewStep, act_on_assignments
from fieldops.dispatch.models import Assignment
from fieldops.dispatch.service import TravelModel, batch_dispatch
from fieldops.incidents.models import Incident, IncidentEvent, IncidentStatus
from fieldops.incidents.service import EventRows, change_status, record_event, write_events

STALE = timedelta(minutes=5)


@pytest.fixture(scope="module")
def travel() -> TravelModel:
    return travel_model()


def opened_floods(sessions: sessionmaker[Session], clock: ManualClock) -> list[int]:
    """The four floods, committed; their incident ids."""
    with unit_of_work(sessions) as session:
        return open_floods(session, clock)


def log_of(session: Session, incident_ids: list[int]) -> list[tuple[Any, ...]]:
    events = session.scalars(
        sa.select(IncidentEvent)
        .where(IncidentEvent.incident_id.in_(incident_ids))
        .order_by(IncidentEvent.id)
    ).all()
    return [(e.id, e.incident_id, e.kind, e.at, e.actor, e.data) for e in events]


def changes(session: Session, incidents: list[Incident], now: Any, rows: EventRows | None) -> None:
    """A caller's own event added as an object, then a status change and a note on each
    incident, logged into ``rows`` when given."""
    record_event(session, incidents[0], kind="note", actor="caller", now=now, data={"n": 0})
    for n, incident in enumerate(incidents):
        change_status(
            session, incident, IncidentStatus.CANCELLED, actor="test", now=now, note="x", rows=rows
        )
        record_event(
            session, incident, kind="note", actor="test", now=now, data={"n": n}, rows=rows
        )


def test_rows_written_together_leave_the_log_objects_leave(
    engine: Engine, sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    incident_ids = opened_floods(sessions, clock)
    now = clock.now() + timedelta(minutes=1)
    logs = []
    for gathered in (False, True):
        with sessions() as session:
            incidents = [session.get(Incident, i) for i in incident_ids]
            assert all(i is not None for i in incidents)
            rows: EventRows | None = [] if gathered else None
            changes(session, incidents, now, rows)  # type: ignore[arg-type]
            if rows is None:
                give_ids(session, session.new)
                session.flush()
            else:
                assert len(session.new) == 1  # the caller's own event alone is an object
                write_events(session, rows)
                assert rows == [] and not session.new
            session.flush()
            logs.append(log_of(session, incident_ids))
            session.rollback()
    as_objects, as_rows = logs
    assert len(as_rows) == 4 + 1 + 2 * 4
    first_new = as_rows[4][0]  # after the four "opened" events
    if engine.dialect.name == "sqlite":
        assert as_rows == as_objects  # ids included
    else:  # a sequence is not rolled back: the same numbering, further on
        shift = first_new - as_objects[4][0]
        assert [(e[0] - shift, *e[1:]) for e in as_rows[4:]] == as_objects[4:]
    assert [e[0] for e in as_rows[4:]] == list(range(first_new, first_new + 9))
    assert [(e[1], e[2]) for e in as_rows[4:7]] == [
        (incident_ids[0], "note"),
        (incident_ids[0], "status_changed"),
        (incident_ids[0], "note"),
    ]


@contextlib.contextmanager
def inserts_and_lookups(engine: Engine) -> Iterator[tuple[list[str], list[str]]]:
    """The INSERTs into the log, and the statements that look an event id up, as sent."""
    with (
        statements_matching(
            engine, lambda text: text.startswith("insert into incident_events")
        ) as inserts,
        statements_matching(
            engine,
            lambda text: (
                "max(incident_events.id)" in text
                or ("incident_events" in text and "nextval" in text)
            ),
        ) as lookups,
    ):
        yield inserts, lookups


def test_a_batch_writes_its_log_with_one_insert_and_no_id_lookup(
    engine: Engine, sessions: sessionmaker[Session], clock: ManualClock, travel: Any
) -> None:
    incident_ids = opened_floods(sessions, clock)
    with inserts_and_lookups(engine) as (inserts, lookups):
        with unit_of_work(sessions) as session:
            result = batch_dispatch(
                session, actor="test", now=clock.now(), travel=travel, stale_after=STALE
            )
            assert len(result.assignments) == 4
            assert len(inserts) == 1 and lookups == []
            round_log = log_of(session, incident_ids)[4:]
        # assigned, then status_changed, for each incident in the round's order
        assert [kind for _, _, kind, *_ in round_log] == ["assigned", "status_changed"] * 4
        assigned = {e[1]: e[5]["assignment_id"] for e in round_log if e[2] == "assigned"}
        assert assigned == {a.incident_id: a.id for a in result.assignments}
        inserts.clear()
        with sessions() as session:
            steps = [
                CrewStep(a.id, a.crew_id, action, clock.now())
                for a in sorted(result.assignments, key=lambda a: a.id)
                for action in ("accept", "en_route")
            ]
            outcomes = act_on_assignments(session, steps)
            assert all(isinstance(o, Assignment) for o in outcomes)
            assert len(inserts) == 1 and lookups == []
            steps_log = log_of(session, incident_ids)[4 + 8 :]
            session.rollback()
    assert [kind for _, _, kind, *_ in steps_log] == [
        "crew_accept",
        "status_changed",
        "crew_en_route",
        "status_changed",
    ] * 4
