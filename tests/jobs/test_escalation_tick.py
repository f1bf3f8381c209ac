"""The escalation tick as a whole, on both backends: its writes are set-based (the same
few statements for 3 due steps or 30), two ticks at once still fire each step once, and
what one step of a tick does is seen by the later steps of the same tick (a raised
priority, a crew that took a job), in the incident's log as in the crews' capacity."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from statements import counting_statements

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewStatus
from fieldops.db.engine import unit_of_work
from fieldops.dispatch.service import assign_crew
from fieldops.dispatch.travel import load_travel_model
from fieldops.districts.models import District
from fieldops.escalation.actions import EscalationActions
from fieldops.escalation.models import EscalationStep, StepStatus
from fieldops.escalation.service import Fired, fire_due
from fieldops.incidents.models import Channel, Incident, IncidentEvent
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import submit_report
from fieldops.notifications.models import Notification
from fieldops.notifications.service import EXERCISE_PREFIX, Outbox
from fieldops.scheduler import Jobs

LAYERS = Path(__file__).resolve().parents[2] / "layers"
STALE = timedelta(minutes=5)
# Flooding is "urgent" (priority 2): supervisor told at dispatch +5 min, priority raised at
# arrive +45 min; a crew is reminded at acknowledge +5 min and replaced 5 min later.
PAST_DISPATCH = timedelta(minutes=6)
PIERREFONDS = [(-73.857, 45.480), (-73.870, 45.475)]  # 1.1 km apart: two incidents
AHUNTSIC = (-73.62, 45.54)


@pytest.fixture(scope="module")
def travel():  # type: ignore[no-untyped-def]
    return load_travel_model(LAYERS, metric_crs="EPSG:32188")


@pytest.fixture
def jobs(sessions: sessionmaker[Session], clock: ManualClock, travel) -> Jobs:  # type: ignore[no-untyped-def]
    return Jobs(sessions=sessions, clock=clock, travel=lambda: travel, stale_after=STALE)


def grid_point(n: int) -> tuple[float, float]:
    """Places in western Montréal at least 400 m apart: never duplicates of each other."""
    return (-73.90 + (n % 15) * 0.01, 45.47 + (n // 15) * 0.004)


def open_floods(
    sessions: sessionmaker[Session], clock: ManualClock, places: list[tuple[float, float]]
) -> list[int]:
    with unit_of_work(sessions) as session:
        context = IntakeContext.load(session)
        opened = [
            submit_report(
                session,
                NewReport(service_code="flooding", lon=lon, lat=lat, channel=Channel.DISPATCHER),
                context=context,
                actor="test",
                now=clock.now(),
            )
            for lon, lat in places
        ]
    assert not any(o.merged for o in opened), "the places must be far enough apart"
    return [o.incident.id for o in opened]


def count_of(sessions: sessionmaker[Session], statement: sa.Select[Any]) -> int:
    with sessions() as session:
        return int(session.scalar(statement) or 0)


def escalation_log(sessions: sessionmaker[Session], incident_id: int) -> list[tuple[str, str]]:
    """(kind, what) of the incident's events written by escalation, in log order."""
    with sessions() as session:
        rows = session.scalars(
            sa.select(IncidentEvent)
            .where(IncidentEvent.incident_id == incident_id, IncidentEvent.actor == "escalation")
            .order_by(IncidentEvent.id)
        ).all()
        return [(e.kind, str(e.data.get("action", e.data.get("to", "")))) for e in rows]


def test_a_tick_writes_with_the_same_few_statements_for_3_or_30_due_steps(
    engine: Engine, sessions, clock, jobs
) -> None:  # type: ignore[no-untyped-def]
    places = iter(grid_point(n) for n in range(60))
    statements = []
    for due in (1, 3, 30):  # the first tick also loads the district names, once
        ids = open_floods(sessions, clock, [next(places) for _ in range(due)])
        clock.advance(PAST_DISPATCH)
        with counting_statements(engine) as count:
            fired = jobs.escalation_tick()
        statements.append(count[0])
        assert sorted(f.incident_id for f in fired) == sorted(ids)
        assert {(f.action, f.status) for f in fired} == {("notify_supervisor", StepStatus.FIRED)}
        assert all(f.reason.startswith("notified the supervisor of ") for f in fired)
    assert statements[1] == statements[2] <= 8, statements
    # ...and wrote everything the 34 steps did: one message, one event each.
    assert count_of(sessions, sa.select(sa.func.count()).select_from(Notification)) == 34
    escalated = sa.select(sa.func.count()).where(IncidentEvent.kind == "escalated")
    assert count_of(sessions, escalated) == 34
    with sessions() as session:
        settled = session.execute(
            sa.select(EscalationStep.status, EscalationStep.settled_at, EscalationStep.reason)
            .where(EscalationStep.action == "notify_supervisor")
            .where(EscalationStep.deadline == "dispatch")
        ).all()
    assert len(settled) == 34
    assert all(s.status == StepStatus.FIRED and s.settled_at is not None for s in settled)
    assert all(s.reason.startswith("notified the supervisor of ") for s in settled)


def test_two_ticks_at_once_fire_every_step_exactly_once(
    engine: Engine, sessions, clock, jobs, travel
) -> None:  # type: ignore[no-untyped-def]
    ids = open_floods(sessions, clock, [grid_point(n) for n in range(12)])
    clock.advance(PAST_DISPATCH)
    actions = EscalationActions(travel=travel, stale_after=STALE, outbox=Outbox())
    holding, release = threading.Event(), threading.Event()
    first: list[Fired] = []
    second: list[Fired] = []
    failures: list[BaseException] = []

    def guarded(work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as exc:  # reported by the test thread below
                failures.append(exc)
                holding.set()

        return run

    def slow_tick() -> None:
        # A scheduler that claims the 5 oldest steps and holds them, uncommitted.
        with unit_of_work(sessions) as session:
            first.extend(fire_due(session, now=clock.now(), run_action=actions, limit=5))
            holding.set()
            release.wait(timeout=60)

    slow = threading.Thread(target=guarded(slow_tick))
    slow.start()
    assert holding.wait(timeout=60) and not failures, failures
    other = threading.Thread(target=guarded(lambda: second.extend(jobs.escalation_tick())))
    other.start()
    if engine.dialect.name == "postgresql":
        # FOR UPDATE SKIP LOCKED: the other scheduler takes the rest without waiting.
        other.join(timeout=60)
        assert not other.is_alive(), "the second tick waited for the first one's rows"
        assert len(second) == 7
    # (SpatiaLite has one writer: the second tick waits for the first to commit.)
    release.set()
    slow.join(timeout=60)
    other.join(timeout=60)
    assert not failures, failures
    assert len(first) == 5 and len(second) == 7
    assert not {f.step_id for f in first} & {f.step_id for f in second}
    assert sorted(f.incident_id for f in first + second) == sorted(ids)
    assert count_of(sessions, sa.select(sa.func.count()).select_from(Notification)) == 12
    escalated = sa.select(sa.func.count()).where(IncidentEvent.kind == "escalated")
    assert count_of(sessions, escalated) == 12
    assert jobs.escalation_tick() == []


def test_a_priority_raised_in_a_tick_is_logged_between_its_escalations(
    sessions, clock, jobs
) -> None:  # type: ignore[no-untyped-def]
    opened = clock.now()
    [incident_id] = open_floods(sessions, clock, PIERREFONDS[:1])
    clock.advance(timedelta(minutes=50))  # dispatch and arrive deadlines both missed
    fired = jobs.escalation_tick()
    assert [(f.action, f.reason) for f in fired] == [
        ("notify_supervisor", "notified the supervisor of Pierrefonds-Roxboro"),
        ("raise_priority", "priority raised from 2 to 1"),
    ]
    assert escalation_log(sessions, incident_id) == [
        ("escalated", "notify_supervisor"),
        ("priority_changed", "1"),
        ("escalated", "raise_priority"),
    ]
    with sessions() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None and incident.priority == 1
        [message] = session.scalars(sa.select(Notification)).all()
    # Queued before the raise: the message tells the priority the deadline was missed at.
    assert message.payload["priority"] == 2
    assert message.subject.endswith("priority 2) missed its dispatch deadline")
    # Re-planned under the priority-1 rule, the steps that fired keep their own times.
    with sessions() as session:
        steps = session.scalars(
            sa.select(EscalationStep).where(EscalationStep.incident_id == incident_id)
        ).all()
        fired_at = {s.key: s.due_at - opened for s in steps if s.status == StepStatus.FIRED}
    assert fired_at == {
        "dispatch:i:notify_supervisor:1": timedelta(seconds=300),
        "arrive:i:raise_priority:1": timedelta(seconds=2700),
    }
    # ...and what the new rule adds comes up at the next tick.
    later = {f.action for f in jobs.escalation_tick()}
    assert later == {"notify_supervisor", "request_mutual_aid"}


def test_an_exercise_tick_marks_every_message_and_keeps_to_the_roster(
    sessions, clock, travel, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    here, there = open_floods(sessions, clock, [PIERREFONDS[0], AHUNTSIC])
    with sessions() as session:
        code = session.scalar(
            sa.select(District.code)
            .join(Incident, Incident.district_id == District.id)
            .where(Incident.id == here)
        )
    drill = Jobs(
        sessions=sessions,
        clock=clock,
        travel=lambda: travel,
        stale_after=STALE,
        outbox=Outbox(exercise=True, roster=frozenset({f"supervisor:{code}"})),
    )
    clock.advance(PAST_DISPATCH)
    with caplog.at_level(logging.WARNING, logger="fieldops.notifications"):
        fired = drill.escalation_tick()
    assert sorted(f.incident_id for f in fired) == sorted([here, there])
    assert "not on the drill roster" in caplog.text
    with sessions() as session:
        stored = session.execute(
            sa.select(Notification.recipient, Notification.subject, Notification.exercise)
        ).all()
    assert [(r.recipient, r.exercise) for r in stored] == [(f"supervisor:{code}", True)]
    assert stored[0].subject == (
        f"{EXERCISE_PREFIX}Incident {here} (flooding, priority 2) missed its dispatch deadline"
    )


def test_a_crew_that_takes_a_job_in_a_tick_is_full_for_the_rest_of_it(
    sessions, clock, travel, jobs
) -> None:  # type: ignore[no-untyped-def]
    first, second = open_floods(sessions, clock, PIERREFONDS)
    with unit_of_work(sessions) as session:
        crews = {c.name: c for c in session.scalars(sa.select(Crew))}
        busy, spare = crews["Pompage Pierrefonds 1"], crews["Pompage Île-Bizard"]
        spare.capacity = 1  # one free slot for the two incidents about to be reassigned
        for crew in crews.values():
            if crew not in (busy, spare):
                crew.status = CrewStatus.OFF_DUTY
        busy_id = busy.id
    for incident_id in (first, second):
        with unit_of_work(sessions) as session:
            assign_crew(
                session,
                incident_id,
                busy_id,
                actor="test",
                now=clock.now(),
                travel=travel,
                stale_after=STALE,
            )
    clock.advance(timedelta(minutes=10, seconds=1))  # remind and reassign both due
    fired = jobs.escalation_tick()
    assert [(f.incident_id, f.action) for f in fired] == [
        (first, "remind_crew"),
        (second, "remind_crew"),
        (first, "reassign"),
        (second, "reassign"),
    ]
    reasons = [f.reason for f in fired]
    assert reasons[:2] == ["reminded crew Pompage Pierrefonds 1 to acknowledge"] * 2
    assert reasons[2].startswith(f"reassigned from crew {busy_id} to Pompage Île-Bizard (ETA ")
    # The spare crew's only slot went to the first incident a moment earlier in this tick.
    assert reasons[3] == "no other crew can take it now (skills, shift or capacity)"
    with sessions() as session:
        recipients = session.scalars(sa.select(Notification.recipient)).all()
    assert recipients == [f"crew:{busy_id}", f"crew:{busy_id}"]
    assert escalation_log(sessions, first) == [
        ("escalated", "remind_crew"),
        ("reassigned", ""),
        ("assigned", ""),
        ("escalated", "reassign"),
    ]
