"""An escalation tick's reassignments written together (``fieldops.escalation.reassigning``),
on both backends: two ticks in a row (reminders and reassignments, then raised priorities,
reminders and reassignments of the new crews) leave the incidents, logs, assignments, crews,
ladders and messages exactly as the same ticks writing each reassignment as it fires, in
the same order; and the tick's statements do not grow with its reassignments."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from statements import counting_statements

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewStatus
from fieldops.db.engine import unit_of_work
from fieldops.dispatch.models import Assignment
from fieldops.dispatch.service import assign_crew
from fieldops.dispatch.travel import load_travel_model
from fieldops.escalation.actions import EscalationActions
from fieldops.escalation.models import EscalationStep
from fieldops.escalation.service import fire_due
from fieldops.incidents.models import Channel, Incident, IncidentEvent, IncidentStatus
from fieldops.incidents.service import IncidentChange, update_incident
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import Submission, submit_many
from fieldops.notifications.models import Notification
from fieldops.notifications.service import Outbox

LAYERS = Path(__file__).resolve().parents[2] / "layers"
STALE = timedelta(minutes=5)
# Flooding is "urgent": a crew is reminded at acknowledge +5 min and replaced 5 min later;
# the priority is raised at the arrive deadline (+45 min).
FIRST_TICK = timedelta(minutes=10, seconds=1)
SECOND_TICK = timedelta(minutes=50)


@pytest.fixture(scope="module")
def travel():  # type: ignore[no-untyped-def]
    return load_travel_model(LAYERS, metric_crs="EPSG:32188")


def grid_point(n: int) -> tuple[float, float]:
    """Places in western Montréal at least 400 m apart: never duplicates of each other."""
    return (-73.90 + (n % 15) * 0.01, 45.47 + (n // 15) * 0.004)


def floods_with_crews(
    sessions: sessionmaker[Session],
    clock: ManualClock,
    travel: Any,
    count: int,
    first: int = 0,
    priority: int | None = None,
) -> list[int]:
    """``count`` floods, each assigned (by hand) to one of two pump crews (committed)."""
    with unit_of_work(sessions) as session:
        results = submit_many(
            session,
            [
                Submission(
                    NewReport(
                        service_code="flooding",
                        lon=lon,
                        lat=lat,
                        channel=Channel.DISPATCHER,
                        priority=priority,
                    ),
                    "test",
                    clock.now(),
                )
                for lon, lat in map(grid_point, range(first, first + count))
            ],
            context=IntakeContext.load(session),
        )
        # Every pump crew on shift all day with room for the lot.
        pumps = []
        for crew in session.scalars(sa.select(Crew).order_by(Crew.id)):
            if "flood_pump" in crew.skills and crew.status != CrewStatus.OFF_DUTY:
                crew.capacity = 2 * count
                crew.shift_starts_at = clock.now() - timedelta(hours=1)
                crew.shift_ends_at = clock.now() + timedelta(hours=12)
                pumps.append(crew.id)
        assert len(pumps) >= 3
        session.flush()
        ids = []
        for n, result in enumerate(results):
            assert not isinstance(result, Exception) and not result.merged
            ids.append(result.incident.id)
            assign_crew(
                session,
                result.incident.id,
                pumps[n % 2],  # two crews hold them all: the others are free to take them
                actor="test",
                now=clock.now(),
                travel=travel,
                stale_after=STALE,
            )
    return ids


def snapshot(session: Session, ids: list[int]) -> dict[str, Any]:
    """Everything the ticks wrote, with the ids the two runs may draw differently (PostGIS
    sequences are not rolled back) replaced by their rank."""
    session.flush()
    assignments = session.scalars(
        sa.select(Assignment).where(Assignment.incident_id.in_(ids)).order_by(Assignment.id)
    ).all()
    rank = {a.id: f"A{n}" for n, a in enumerate(assignments)}

    def plain(text: str) -> str:
        return re.sub(r"(?<=:a)(\d+)", lambda m: rank[int(m.group(1))], text)

    def data(d: dict[str, Any]) -> dict[str, Any]:
        return {
            k: (rank[v] if k == "assignment_id" else plain(v) if isinstance(v, str) else v)
            for k, v in d.items()
        }

    events = session.scalars(
        sa.select(IncidentEvent)
        .where(IncidentEvent.incident_id.in_(ids))
        .order_by(IncidentEvent.id)
    ).all()
    ladder = session.scalars(
        sa.select(EscalationStep)
        .where(EscalationStep.incident_id.in_(ids))
        .order_by(EscalationStep.id)
    ).all()
    notes = session.scalars(sa.select(Notification).order_by(Notification.id)).all()
    incidents = session.scalars(
        sa.select(Incident).where(Incident.id.in_(ids)).order_by(Incident.id)
    ).all()
    crews = session.scalars(sa.select(Crew).order_by(Crew.id)).all()
    return {
        "events": [(e.incident_id, e.kind, e.actor, e.at, data(e.data)) for e in events],
        "assignments": [
            (a.incident_id, a.crew_id, a.status, a.is_active, a.version, a.eta_s, a.finished_at)
            for a in assignments
        ],
        "ladder": [
            (s.incident_id, plain(s.key), s.status, s.reason, s.due_at, s.deadline_at, s.settled_at)
            for s in ladder
        ],
        "notifications": [(n.recipient, plain(n.dedupe_key), n.subject) for n in notes],
        "incidents": [
            (i.id, i.status, i.priority, i.updated_at, i.acknowledge_due_at, i.arrive_due_at)
            for i in incidents
        ],
        "crews": [(c.id, c.status) for c in crews],
    }


def ticks(
    sessions: sessionmaker[Session],
    clock: ManualClock,
    travel: Any,
    ids: list[int],
    batch: bool,
    at: tuple[timedelta, ...] = (FIRST_TICK, SECOND_TICK),
) -> tuple[list[Any], dict[str, Any]]:
    actions = EscalationActions(
        travel=travel, stale_after=STALE, outbox=Outbox(), batch_reassignments=batch
    )
    with sessions() as session:
        fired = []
        for after in at:
            fired += [
                (f.incident_id, f.action, f.status, f.reason)
                for f in fire_due(session, now=clock.now() + after, run_action=actions)
            ]
        got = snapshot(session, ids)
        session.rollback()
    return fired, got


def test_a_ticks_reassignments_written_together_leave_what_one_by_one_leaves(
    sessions: sessionmaker[Session], clock: ManualClock, travel: Any
) -> None:
    ids = floods_with_crews(sessions, clock, travel, 6)
    fired_alone, alone = ticks(sessions, clock, travel, ids, batch=False)
    fired, together = ticks(sessions, clock, travel, ids, batch=True)

    assert fired == fired_alone
    assert together == alone
    # The ticks did what the ladder says: reminded and replaced crews, raised priorities.
    actions = [action for _, action, _, _ in fired]
    assert actions.count("reassign") >= 6 and "raise_priority" in actions
    reasons = [reason for _, action, _, reason in fired if action == "reassign"]
    assert sum(r.startswith("reassigned from crew ") for r in reasons) >= 4
    kinds = [kind for _, kind, _, _, _ in alone["events"]]
    assert kinds.count("reassigned") >= 4 and "priority_changed" in kinds


def test_a_step_after_a_reassignment_in_the_same_tick_sees_it_written(
    sessions: sessionmaker[Session], clock: ManualClock, travel: Any
) -> None:
    # Life safety: reminded at acknowledge, replaced 30 s later, supervisor told at arrive
    # (15 min). A late tick fires all three: the arrive step is judged, and the supervisor
    # told, after the reassignment before it in the tick is written.
    ids = floods_with_crews(sessions, clock, travel, 4, priority=1)
    late = (timedelta(minutes=20),)
    fired_alone, alone = ticks(sessions, clock, travel, ids, batch=False, at=late)
    fired, together = ticks(sessions, clock, travel, ids, batch=True, at=late)

    assert fired == fired_alone
    assert together == alone
    by_incident = [(i, action) for i, action, _, _ in fired if i == ids[0]]
    assert by_incident == [
        (ids[0], "remind_crew"),
        (ids[0], "reassign"),
        (ids[0], "notify_supervisor"),
    ]


def test_a_tick_sends_about_as_many_statements_for_2_reassignments_as_for_6(
    sessions: sessionmaker[Session], clock: ManualClock, travel: Any
) -> None:
    counts: dict[tuple[int, bool], int] = {}
    for first, count in ((0, 2), (2, 6)):
        ids = floods_with_crews(sessions, clock, travel, count, first)
        for batch in (True, False):
            actions = EscalationActions(
                travel=travel, stale_after=STALE, outbox=Outbox(), batch_reassignments=batch
            )
            with sessions() as session:
                with counting_statements(session.get_bind()) as sent:  # type: ignore[arg-type]
                    fired = fire_due(session, now=clock.now() + FIRST_TICK, run_action=actions)
                counts[(count, batch)] = sent[0]
                session.rollback()
            reassigned = [f for f in fired if f.reason.startswith("reassigned from crew ")]
            assert len(reassigned) == count
        with unit_of_work(sessions) as session:  # their ladders end: the next tick is theirs
            for incident_id in ids:
                update_incident(
                    session,
                    incident_id,
                    IncidentChange(status=IncidentStatus.CANCELLED),
                    actor="test",
                    now=clock.now(),
                )
    # Together: the same statements, but for an UPDATE of crews whose status changed or
    # not; one by one, a dozen more per reassignment.
    assert abs(counts[(6, True)] - counts[(2, True)]) <= 2, counts
    assert counts[(6, False)] - counts[(2, False)] >= 4 * 10, counts
