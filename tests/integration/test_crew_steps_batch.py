"""Crews' steps in a batch (``act_on_assignments``), on both backends: the batch leaves the
assignments, incidents, crews, incident logs and escalation ladders exactly as the same
steps taken one after the other would, refused steps included, and it costs a handful of
statements whatever its size."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from floods import open_floods, travel_model
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from statements import counting_statements

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewStatus
from fieldops.db.engine import unit_of_work
from fieldops.dispatch.crew_steps import CrewStep, act_on_assignment, act_on_assignments
from fieldops.dispatch.models import Assignment
from fieldops.dispatch.service import TravelModel, batch_dispatch
from fieldops.errors import Conflict, FieldOpsError, InvalidInput, NotFound
from fieldops.escalation.models import EscalationStep
from fieldops.incidents.models import Incident, IncidentEvent

STALE = timedelta(minutes=5)


@pytest.fixture(scope="module")
def travel() -> TravelModel:
    return travel_model()


@pytest.fixture
def assigned(
    sessions: sessionmaker[Session], clock: ManualClock, travel: TravelModel
) -> list[Assignment]:
    """Four floods, each given a crew by a batch round (committed)."""
    with unit_of_work(sessions) as session:
        open_floods(session, clock)
        result = batch_dispatch(
            session, actor="test", now=clock.now(), travel=travel, stale_after=STALE
        )
        session.expunge_all()
    assignments = sorted(result.assignments, key=lambda a: a.incident_id)
    assert len(assignments) == 4 and len({a.crew_id for a in assignments}) > 1
    return assignments


def script(assignments: list[Assignment], clock: ManualClock) -> list[CrewStep]:
    """Steps of four crews over two minutes, some of which the service must refuse."""
    a, b, c, d = assignments
    stranger = next(x.crew_id for x in assignments if x.crew_id != d.crew_id)
    t0 = clock.now()
    t1, t2 = t0 + timedelta(seconds=60), t0 + timedelta(seconds=120)
    return [
        CrewStep(a.id, a.crew_id, "accept", t0),
        CrewStep(a.id, a.crew_id, "en_route", t0),
        CrewStep(b.id, b.crew_id, "decline", t0),  # refused: a decline needs a reason
        CrewStep(b.id, b.crew_id, "decline", t0, note="pump broken"),
        CrewStep(b.id, b.crew_id, "accept", t0),  # refused: declined already
        CrewStep(c.id, c.crew_id, "on_scene", t0),  # refused: not accepted yet
        CrewStep(c.id, c.crew_id, "accept", t0, version=1),
        CrewStep(a.id, a.crew_id, "on_scene", t1),  # the same incident, a minute later
        CrewStep(c.id, c.crew_id, "en_route", t1, version=1),  # refused: version 2 now
        CrewStep(d.id, stranger, "accept", t1),  # refused: another crew's job
        CrewStep(a.id, a.crew_id, "done", t2, note="pumped out"),
        CrewStep(d.id, d.crew_id, "dance", t2),  # refused: no such action
        CrewStep(d.id, d.crew_id, "accept", t2),
    ]


def snapshot(session: Session, incident_ids: list[int]) -> dict[str, Any]:
    """What the steps changed, without the ids that differ between two runs."""
    session.flush()
    where = Incident.id.in_(incident_ids)
    incidents = session.scalars(sa.select(Incident).where(where).order_by(Incident.id)).all()
    events = session.scalars(
        sa.select(IncidentEvent)
        .where(IncidentEvent.incident_id.in_(incident_ids))
        .order_by(IncidentEvent.incident_id, IncidentEvent.id)
    ).all()
    ladder = session.scalars(
        sa.select(EscalationStep)
        .where(EscalationStep.incident_id.in_(incident_ids))
        .order_by(EscalationStep.incident_id, EscalationStep.key)
    ).all()
    assignments = session.scalars(
        sa.select(Assignment)
        .where(Assignment.incident_id.in_(incident_ids))
        .order_by(Assignment.id)
    ).all()
    crew_ids = sorted({a.crew_id for a in assignments})
    crews = session.scalars(sa.select(Crew).where(Crew.id.in_(crew_ids)).order_by(Crew.id)).all()
    return {
        "incidents": [
            (
                i.id,
                i.status,
                i.is_open,
                i.closed_at,
                i.updated_at,
                i.status_notes,
                i.acknowledge_due_at,
                i.arrive_due_at,
            )
            for i in incidents
        ],
        "events": [(e.incident_id, e.kind, e.at, e.actor, e.data) for e in events],
        "ladder": [
            (s.incident_id, s.key, s.status, s.reason, s.due_at, s.settled_at) for s in ladder
        ],
        "assignments": [
            (
                a.id,
                a.status,
                a.is_active,
                a.version,
                a.accepted_at,
                a.arrived_at,
                a.finished_at,
                a.note,
            )
            for a in assignments
        ],
        "crews": [(c.id, c.status) for c in crews],
    }


def one_after_the_other(session: Session, steps: list[CrewStep]) -> list[str]:
    outcomes = []
    for step in steps:
        try:
            with session.begin_nested():
                act_on_assignment(
                    session,
                    step.assignment_id,
                    crew_id=step.crew_id,
                    action=step.action,
                    version=step.version,
                    note=step.note,
                    actor=f"crew:{step.crew_id}",
                    now=step.at,
                )
            outcomes.append("ok")
        except FieldOpsError as exc:
            outcomes.append(type(exc).__name__)
    return outcomes


def test_a_batch_of_steps_leaves_what_the_steps_one_after_the_other_leave(
    sessions: sessionmaker[Session], clock: ManualClock, assigned: list[Assignment]
) -> None:
    steps = script(assigned, clock)
    incident_ids = [a.incident_id for a in assigned]
    with sessions() as session:
        alone = one_after_the_other(session, steps)
        expected = snapshot(session, incident_ids)
        session.rollback()
    with sessions() as session:
        outcomes = act_on_assignments(session, steps)
        got = snapshot(session, incident_ids)
        session.rollback()

    kinds = ["ok" if isinstance(o, Assignment) else type(o).__name__ for o in outcomes]
    assert kinds == alone
    assert kinds == [
        "ok",
        "ok",
        "InvalidInput",
        "ok",
        "Conflict",
        "Conflict",
        "ok",
        "ok",
        "Conflict",
        "NotFound",
        "ok",
        "InvalidInput",
        "ok",
    ]
    assert got == expected
    # The steps did what a crew expects: the first flood is resolved, the declined one is
    # open again, and the acknowledge steps of the accepted jobs were settled.
    statuses = [row[1] for row in got["incidents"]]
    assert statuses == ["resolved", "open", "acknowledged", "acknowledged"]
    assert got["incidents"][0][1:3] == ("resolved", False)


def test_a_refused_step_says_why_and_changes_nothing(
    sessions: sessionmaker[Session], clock: ManualClock, assigned: list[Assignment]
) -> None:
    a = assigned[0]
    with sessions() as session:
        before = snapshot(session, [a.incident_id])
        outcomes = act_on_assignments(
            session,
            [
                CrewStep(a.id, a.crew_id, "done", clock.now()),
                CrewStep(a.id, a.crew_id + 10_000, "accept", clock.now()),
                CrewStep(a.id, a.crew_id, "decline", clock.now(), note="  "),
            ],
        )
        assert snapshot(session, [a.incident_id]) == before
    done, stranger, blank = outcomes
    assert isinstance(done, Conflict) and "'done' needs on_scene" in str(done)
    assert isinstance(stranger, NotFound)
    assert isinstance(blank, InvalidInput) and blank.problems[0].field == "note"


def test_the_statements_of_a_batch_do_not_grow_with_its_steps(
    engine: Engine, sessions: sessionmaker[Session], clock: ManualClock, assigned: list[Assignment]
) -> None:
    def statements(n: int) -> int:
        with sessions() as session, counting_statements(engine) as counted:
            steps = [CrewStep(a.id, a.crew_id, "accept", clock.now()) for a in assigned[:n]]
            outcomes = act_on_assignments(session, steps)
            assert all(isinstance(o, Assignment) for o in outcomes)
            session.rollback()
        return counted[0]

    assert statements(4) == statements(1)


def test_an_off_duty_crew_declining_cancels_the_acknowledge_ladder(
    sessions: sessionmaker[Session], clock: ManualClock, assigned: list[Assignment]
) -> None:
    """Planning after a step reads the step from the table, even when no crew's status is
    refreshed (an off-duty crew keeps its status)."""
    a = assigned[0]
    with unit_of_work(sessions) as session:
        crew = session.get(Crew, a.crew_id)
        assert crew is not None
        crew.status = CrewStatus.OFF_DUTY
    with unit_of_work(sessions) as session:
        act_on_assignment(
            session,
            a.id,
            crew_id=a.crew_id,
            action="decline",
            version=None,
            note="off duty",
            actor=f"crew:{a.crew_id}",
            now=clock.now(),
        )
    with sessions() as session:
        incident = session.get(Incident, a.incident_id)
        assert incident is not None and incident.status == "open"
        assert incident.acknowledge_due_at is None
        waiting = session.scalars(
            sa.select(EscalationStep.key).where(
                EscalationStep.incident_id == a.incident_id,
                EscalationStep.deadline == "acknowledge",
                EscalationStep.status == "planned",
            )
        ).all()
        assert waiting == []
