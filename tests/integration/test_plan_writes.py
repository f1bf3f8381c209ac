"""How ``plan_incidents`` writes the steps it plans, on both backends: with one statement,
numbered by the database, they are the rows (ids included) that planning each incident
alone leaves; the new steps are not held in the session afterwards, and a caller's own
unflushed new object is written as before, with its id."""

from __future__ import annotations

import contextlib
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
from fieldops.dispatch.roster import crew_states, skills_by_service
from fieldops.dispatch.service import Dispatch, TravelModel, assign_crews
from fieldops.escalation.models import EscalationStep, StepStatus
from fieldops.escalation.service import plan_incident, plan_incidents
from fieldops.incidents.models import Incident, IncidentEvent

STALE = timedelta(minutes=5)


@pytest.fixture(scope="module")
def travel() -> TravelModel:
    return travel_model()


def floods_with_crews(
    sessions: sessionmaker[Session], clock: ManualClock, travel: Any
) -> list[int]:
    """Four floods, each given a crew and not re-planned since (committed): planning
    them adds their acknowledge steps."""
    with unit_of_work(sessions) as session:
        ids = open_floods(session, clock)
        needs = skills_by_service(session)["flooding"]
        crews = [
            c.crew_id
            for c in crew_states(session, now=clock.now(), stale_after=STALE, able_only=True)
            if c.can_take(needs, clock.now()) is None
        ]
        done = assign_crews(
            session,
            [Dispatch(i, c) for i, c in zip(ids, crews[:4], strict=True)],
            actor="test",
            now=clock.now(),
            travel=travel,
            stale_after=STALE,
        )
        assert all(i is not None for _, i in done)
    return ids


def ladder(session: Session, ids: list[int]) -> list[tuple[Any, ...]]:
    return [
        (s.id, s.incident_id, s.key, s.status, s.due_at, s.deadline_at, s.reason, s.planned_at)
        for s in session.scalars(
            sa.select(EscalationStep)
            .where(EscalationStep.incident_id.in_(ids))
            .order_by(EscalationStep.id)
        )
    ]


def step_id_lookups(engine: Engine) -> contextlib.AbstractContextManager[list[str]]:
    """The statements that look the next step id up (SpatiaLite's highest id read)."""
    return statements_matching(engine, lambda text: "max(escalation_steps.id)" in text)


def test_steps_planned_together_are_the_rows_planning_each_alone_leaves(
    engine: Engine, sessions: sessionmaker[Session], clock: ManualClock, travel: Any
) -> None:
    ids = floods_with_crews(sessions, clock, travel)
    now = clock.now() + timedelta(seconds=30)
    with sessions() as session:
        incidents = {i.id: i for i in session.scalars(sa.select(Incident))}
        for incident_id in ids:
            plan_incident(session, incidents[incident_id], now=now)
        alone = ladder(session, ids)
        session.rollback()
    with sessions() as session, step_id_lookups(engine) as lookups:
        incidents = {i.id: i for i in session.scalars(sa.select(Incident))}
        known = {s.id for s in session.scalars(sa.select(EscalationStep))}
        plan_incidents(session, [incidents[i] for i in ids], now=now)
        together = ladder(session, ids)
        held = {o.id for o in session.identity_map.values() if isinstance(o, EscalationStep)}
        session.rollback()
    assert lookups == []
    added = [row for row in together if row[0] not in known]
    assert len(added) >= 4 and {row[2].split(":")[0] for row in added} == {"acknowledge"}
    assert not held & {row[0] for row in added}  # written and let go
    if engine.dialect.name == "sqlite":
        assert together == alone  # ids included
    else:  # a sequence is not rolled back: the same numbering, further on
        shift = added[0][0] - next(r[0] for r in alone if r[2].startswith("acknowledge"))
        assert [(r[0] - shift if r[0] not in known else r[0], *r[1:]) for r in together] == alone
    assert [row[0] for row in added] == list(range(added[0][0], added[0][0] + len(added)))


def test_a_callers_own_new_object_is_written_with_the_steps_as_before(
    sessions: sessionmaker[Session], clock: ManualClock, travel: Any
) -> None:
    ids = floods_with_crews(sessions, clock, travel)
    now = clock.now() + timedelta(seconds=30)
    with sessions() as session:
        incidents = [session.get(Incident, i) for i in ids]
        note = IncidentEvent(incident_id=ids[0], at=now, actor="caller", kind="note", data={})
        session.add(note)
        plan_incidents(session, incidents, now=now)  # type: ignore[arg-type]
        assert note.id is not None and note in session and not session.new
        steps = session.scalars(
            sa.select(EscalationStep).where(
                EscalationStep.incident_id.in_(ids), EscalationStep.deadline == "acknowledge"
            )
        ).all()
        assert {s.incident_id for s in steps} == set(ids)
        session.rollback()


def test_a_step_the_session_holds_changed_is_planned_as_held(
    sessions: sessionmaker[Session], clock: ManualClock, travel: Any
) -> None:
    """Planning reads steps as rows, but one the session holds with a change not yet
    written (the escalation tick marks a step fired, then reassigns) is planned as held,
    as the query for objects gave it: a met deadline's step that just fired stays fired."""
    ids = floods_with_crews(sessions, clock, travel)
    now = clock.now() + timedelta(seconds=30)
    with sessions() as session:
        incidents = [session.get(Incident, i) for i in ids]
        # Their ids only: the others are not held as objects, so planning reads them as rows.
        dispatch_step_ids = session.scalars(
            sa.select(EscalationStep.id)
            .where(
                EscalationStep.incident_id.in_(ids),
                EscalationStep.deadline == "dispatch",
                EscalationStep.status == StepStatus.PLANNED,
            )
            .order_by(EscalationStep.id)
        ).all()
        assert len(dispatch_step_ids) >= 2  # each met now that a crew is on its way
        fired_id, other_ids = dispatch_step_ids[0], list(dispatch_step_ids[1:])
        fired = session.get(EscalationStep, fired_id)
        assert fired is not None
        fired.status, fired.reason, fired.settled_at = StepStatus.FIRED, "fired by the tick", now
        held = {o.id for o in session.identity_map.values() if isinstance(o, EscalationStep)}
        assert held == {fired_id}

        plan_incidents(session, incidents, now=now)  # type: ignore[arg-type]

        session.expire_all()
        stored = {
            s.id: (s.status, s.reason)
            for s in session.scalars(
                sa.select(EscalationStep).where(EscalationStep.id.in_([fired_id, *other_ids]))
            )
        }
        session.rollback()
    assert stored[fired_id] == (StepStatus.FIRED, "fired by the tick")
    others = [stored[i] for i in other_ids]
    assert all(status == StepStatus.CANCELLED and "dispatch" in reason for status, reason in others)
