"""Escalation on both backends: deadlines, exactly-once firing, catch-up, snooze, trace."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew
from fieldops.db.engine import unit_of_work
from fieldops.dispatch.crew_steps import act_on_assignment
from fieldops.dispatch.service import assign_crew
from fieldops.dispatch.travel import load_travel_model
from fieldops.escalation.models import EscalationStep, StepStatus
from fieldops.incidents.models import Channel, Incident, IncidentEvent, IncidentStatus
from fieldops.incidents.service import IncidentChange, update_incident
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import submit_report
from fieldops.notifications.models import Notification
from fieldops.scheduler import Jobs, build_scheduler

LAYERS = Path(__file__).resolve().parents[2] / "layers"
PIERREFONDS = (-73.857, 45.480)
STALE = timedelta(minutes=5)


@pytest.fixture(scope="module")
def travel():  # type: ignore[no-untyped-def]
    return load_travel_model(LAYERS, metric_crs="EPSG:32188")


@pytest.fixture
def jobs(sessions: sessionmaker[Session], clock: ManualClock, travel) -> Jobs:  # type: ignore[no-untyped-def]
    return Jobs(sessions=sessions, clock=clock, travel=lambda: travel, stale_after=STALE)


def open_flood(sessions: sessionmaker[Session], clock: ManualClock, at=PIERREFONDS) -> int:  # type: ignore[no-untyped-def]
    with unit_of_work(sessions) as session:
        outcome = submit_report(
            session,
            NewReport(service_code="flooding", lon=at[0], lat=at[1], channel=Channel.DISPATCHER),
            context=IntakeContext.load(session),
            actor="test",
            now=clock.now(),
        )
        return outcome.incident.id


def pump_crew(session: Session) -> int:
    # "Pompage Pierrefonds 1" works days (07:00-19:00); the clock starts at 10:00.
    return session.scalars(sa.select(Crew.id).where(Crew.name == "Pompage Pierrefonds 1")).one()


def assign(sessions, clock, travel, incident_id: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with unit_of_work(sessions) as session:
        crew_id = pump_crew(session)
        assignment = assign_crew(
            session,
            incident_id,
            crew_id,
            actor="test",
            now=clock.now(),
            travel=travel,
            stale_after=STALE,
        )
        return assignment.id, crew_id


def steps(sessions: sessionmaker[Session], incident_id: int) -> dict[str, EscalationStep]:
    with sessions() as session:
        return {
            s.key: s
            for s in session.scalars(
                sa.select(EscalationStep).where(EscalationStep.incident_id == incident_id)
            )
        }


def test_opening_plans_absolute_deadlines_from_the_policy(sessions, clock) -> None:  # type: ignore[no-untyped-def]
    incident_id = open_flood(sessions, clock)
    with sessions() as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None and incident.priority == 2  # flooding: "urgent" rule
        assert incident.dispatch_due_at == clock.now() + timedelta(seconds=300)
        assert incident.arrive_due_at == clock.now() + timedelta(seconds=2700)
        assert incident.resolve_due_at == clock.now() + timedelta(seconds=14400)
        assert incident.acknowledge_due_at is None  # nobody assigned yet
    planned = steps(sessions, incident_id)
    assert sorted(s.action for s in planned.values()) == [
        "notify_supervisor",
        "notify_supervisor",
        "raise_priority",
    ]
    assert all(s.status == StepStatus.PLANNED for s in planned.values())


def test_acknowledged_one_second_before_the_deadline_does_not_escalate(
    sessions, clock, travel, jobs
) -> None:  # type: ignore[no-untyped-def]
    incident_id = open_flood(sessions, clock)
    assignment_id, crew_id = assign(sessions, clock, travel, incident_id)
    clock.advance(timedelta(seconds=299))
    with unit_of_work(sessions) as session:
        act_on_assignment(
            session,
            assignment_id,
            crew_id=crew_id,
            action="accept",
            version=None,
            note="",
            actor="crew",
            now=clock.now(),
        )
    clock.advance(timedelta(seconds=2))
    assert [f for f in jobs.escalation_tick() if f.incident_id == incident_id] == []
    remind = next(s for s in steps(sessions, incident_id).values() if s.action == "remind_crew")
    assert remind.status == StepStatus.CANCELLED
    assert remind.reason.endswith("1 s before the deadline")
    assert remind.reason.startswith("acknowledged at 14:04:59Z")


def test_a_missed_deadline_fires_each_step_exactly_once(sessions, clock, travel, jobs) -> None:  # type: ignore[no-untyped-def]
    incident_id = open_flood(sessions, clock)
    assign(sessions, clock, travel, incident_id)
    clock.advance(timedelta(seconds=300))
    fired = jobs.escalation_tick()
    assert [(f.incident_id, f.action, f.status) for f in fired] == [
        (incident_id, "remind_crew", StepStatus.FIRED)
    ]
    assert fired[0].reason == "reminded crew Pompage Pierrefonds 1 to acknowledge"
    assert jobs.escalation_tick() == []
    with sessions() as session:
        sent = session.scalars(sa.select(Notification.recipient)).all()
        kinds = session.scalars(
            sa.select(IncidentEvent.kind).where(IncidentEvent.incident_id == incident_id)
        ).all()
    assert len(sent) == 1 and sent[0].startswith("crew:")
    assert kinds.count("escalated") == 1


def test_catch_up_after_downtime_fires_overdue_steps_once_in_deadline_order(
    sessions, clock, jobs
) -> None:  # type: ignore[no-untyped-def]
    first = open_flood(sessions, clock)
    clock.advance(timedelta(seconds=30))
    second = open_flood(sessions, clock, at=(-73.62, 45.54))  # Ahuntsic: not a duplicate
    clock.advance(timedelta(minutes=50))  # the scheduler was down all this time
    fired = jobs.escalation_tick()
    due = {
        f.step_id: s.due_at
        for f in fired
        for s in steps(sessions, f.incident_id).values()
        if s.id == f.step_id
    }
    assert [due[f.step_id] for f in fired] == sorted(due.values())
    assert Counter(f.incident_id for f in fired) == {first: 2, second: 2}  # dispatch + arrive
    assert {f.action for f in fired} == {"notify_supervisor", "raise_priority"}
    # Priority 1 now: its rule adds what the urgent one lacked (a supervisor at the
    # arrive deadline, mutual aid), once; the dispatch notice already sent is not repeated.
    later = jobs.escalation_tick()
    assert sorted((f.incident_id, f.action) for f in later) == sorted(
        [(i, a) for i in (first, second) for a in ("notify_supervisor", "request_mutual_aid")]
    )
    assert jobs.escalation_tick() == []
    for incident_id in (first, second):
        fired_keys = [
            s.key for s in steps(sessions, incident_id).values() if s.status == StepStatus.FIRED
        ]
        assert sorted(fired_keys) == [
            "arrive:i:notify_supervisor:1",
            "arrive:i:raise_priority:1",
            "arrive:i:request_mutual_aid:1",
            "dispatch:i:notify_supervisor:1",
        ]


def test_snooze_and_manual_acknowledgement_hold_escalation(sessions, clock, travel, jobs) -> None:  # type: ignore[no-untyped-def]
    from fieldops.escalation.service import snooze

    incident_id = open_flood(sessions, clock)
    with unit_of_work(sessions) as session:
        incident = session.get(Incident, incident_id)
        assert incident is not None
        moved = snooze(
            session, incident, until=clock.now() + timedelta(minutes=10), actor="d", now=clock.now()
        )
    assert moved == 1  # only the dispatch step (due at +5 min) falls inside the snooze
    clock.advance(timedelta(minutes=6))  # past the 5-minute dispatch deadline, inside the snooze
    assert jobs.escalation_tick() == []
    clock.advance(timedelta(minutes=5))
    assert [f.action for f in jobs.escalation_tick()] == ["notify_supervisor"]

    other = open_flood(sessions, clock, at=(-73.62, 45.54))
    assign(sessions, clock, travel, other)
    with unit_of_work(sessions) as session:
        update_incident(
            session,
            other,
            IncidentChange(status=IncidentStatus.ACKNOWLEDGED),
            actor="d",
            now=clock.now(),
        )
    clock.advance(timedelta(minutes=6))
    assert all(
        f.incident_id != other or f.action not in {"remind_crew", "reassign"}
        for f in jobs.escalation_tick()
    )
    acks = [s for s in steps(sessions, other).values() if s.deadline == "acknowledge"]
    assert acks and all(s.status == StepStatus.CANCELLED for s in acks)


def test_the_real_scheduler_runs_the_job_on_the_injected_clock(sessions, clock, jobs) -> None:  # type: ignore[no-untyped-def]
    incident_id = open_flood(sessions, clock)
    clock.advance(timedelta(minutes=6))
    scheduler = build_scheduler(jobs)
    scheduler.start()
    running = sorted(job.id for job in scheduler.get_jobs())
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(s.status == StepStatus.FIRED for s in steps(sessions, incident_id).values()):
                break
            time.sleep(0.2)
    finally:
        scheduler.shutdown(wait=True)
    assert running == [
        "deliver-notifications",
        "emergency-batch",
        "escalation-tick",
    ]
    fired = [s for s in steps(sessions, incident_id).values() if s.status == StepStatus.FIRED]
    assert [s.action for s in fired] == ["notify_supervisor"]


WORKER = """
import sys
from datetime import timedelta
from fieldops.clock import SystemClock
from fieldops.db.engine import make_engine, make_sessionmaker
from fieldops.geo.routing import StraightLineOnly
from fieldops.scheduler import Jobs
engine = make_engine(sys.argv[1])
jobs = Jobs(sessions=make_sessionmaker(engine), clock=SystemClock(),
            travel=StraightLineOnly, stale_after=timedelta(minutes=5), tick_limit=10)
idle = 0
while idle < 3:
    fired = jobs.escalation_tick()
    idle = 0 if fired else idle + 1
    for f in fired:
        print(f.step_id, flush=True)
"""


def test_two_scheduler_processes_fire_every_step_exactly_once(engine: Engine, sessions) -> None:  # type: ignore[no-untyped-def]
    # 60 incidents reported two hours ago: every dispatch and arrive step is overdue now
    # (and raising priorities plans more, which come due at once too).
    real_now = ManualClock(__import__("datetime").datetime.now(__import__("datetime").UTC))
    with unit_of_work(sessions) as session:
        context = IntakeContext.load(session)
        for n in range(60):
            submit_report(
                session,
                NewReport(
                    service_code="flooding",
                    lon=-73.90 + (n % 15) * 0.01,
                    lat=45.47 + (n // 15) * 0.004,
                    channel=Channel.DISPATCHER,
                    requested_at=real_now.now() - timedelta(hours=2),
                ),
                context=context,
                actor="test",
                now=real_now.now() - timedelta(hours=2),
            )
    with sessions() as session:
        due = session.scalar(
            sa.select(sa.func.count())
            .select_from(EscalationStep)
            .where(
                EscalationStep.status == StepStatus.PLANNED,
                EscalationStep.due_at <= real_now.now(),
            )
        )
    assert due is not None and due >= 120
    url = engine.url.render_as_string(hide_password=False)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url], stdout=subprocess.PIPE, text=True, env=env
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=180)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    fired = [[int(line) for line in out.split()] for out in outputs]
    assert not set(fired[0]) & set(fired[1]), "a step fired in both schedulers"
    with sessions() as session:
        statuses = Counter(session.scalars(sa.select(EscalationStep.status)).all())
        escalated = session.scalar(
            sa.select(sa.func.count())
            .select_from(IncidentEvent)
            .where(IncidentEvent.kind == "escalated")
        )
        still_due = session.scalar(
            sa.select(sa.func.count())
            .select_from(EscalationStep)
            .where(
                EscalationStep.status == StepStatus.PLANNED,
                EscalationStep.due_at <= real_now.now(),
            )
        )
    total = len(fired[0]) + len(fired[1])
    assert total >= due
    assert statuses[StepStatus.FIRED] == escalated == total
    assert still_due == 0
