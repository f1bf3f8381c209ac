"""Planning many incidents at once (``plan_incidents``), on both backends, where an
emergency's service notice stretches deadlines: the batch leaves the deadlines and ladders
that planning each incident alone, as of its own instant, leaves (the emergency active at
one instant and ended at another), and it looks the emergencies up once, not once per
incident."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from statements import counting_statements

from fieldops.clock import ManualClock
from fieldops.db.engine import unit_of_work
from fieldops.emergencies.service import NewEmergency, declare_emergency, end_emergency
from fieldops.errors import FieldOpsError
from fieldops.escalation.models import EscalationStep
from fieldops.escalation.service import plan_incident, plan_incidents
from fieldops.incidents.models import Channel, Incident
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import Submission, submit_many

WEST_BANK = [(-73.875, 45.470), (-73.850, 45.470), (-73.850, 45.492), (-73.875, 45.492)]
# Potholes inside the flood's box (they get its notice) and one far from it.
INSIDE = [(-73.857, 45.48), (-73.86, 45.485), (-73.87, 45.475), (-73.853, 45.489)]
AHUNTSIC = (-73.6708, 45.5451)


def _setup(sessions: sessionmaker[Session], start: datetime) -> list[int]:
    """A flood declared at ``start`` (covering flooding only), potholes reported inside
    and outside it a minute later and a flooding inside, the flood ended half an hour in
    (committed)."""
    with unit_of_work(sessions) as session:
        declare_emergency(
            session,
            NewEmergency(
                name="Crue",
                hazard="flood",
                service_codes=["flooding"],
                area={
                    "type": "Polygon",
                    "coordinates": [[list(p) for p in [*WEST_BANK, WEST_BANK[0]]]],
                },
                deadline_factor=0.5,
                notice_en="Flooding in the area: expect delays.",
            ),
            actor="test",
            now=start,
        )
        context = IntakeContext.load(session)
        results = submit_many(
            session,
            [
                Submission(
                    NewReport(service_code=code, lon=lon, lat=lat, channel=Channel.DISPATCHER),
                    "test",
                    start + timedelta(minutes=1),
                )
                for code, (lon, lat) in [
                    *(("pothole", p) for p in INSIDE),
                    ("pothole", AHUNTSIC),
                    ("flooding", INSIDE[0]),  # covered: it joins the flood
                    ("flooding", INSIDE[2]),  # another, far enough not to be its duplicate
                ]
            ],
            context=context,
        )
    ids = []
    for result in results:
        assert not isinstance(result, FieldOpsError)
        assert not result.merged
        ids.append(result.incident.id)
    with unit_of_work(sessions) as session:
        (emergency_id,) = session.scalars(sa.text("SELECT id FROM emergencies")).all()
        end_emergency(session, emergency_id, actor="test", now=start + timedelta(minutes=30))
    return ids


def snapshot(session: Session, ids: list[int]) -> dict[str, Any]:
    session.flush()
    incidents = session.scalars(
        sa.select(Incident).where(Incident.id.in_(ids)).order_by(Incident.id)
    ).all()
    ladder = session.scalars(
        sa.select(EscalationStep)
        .where(EscalationStep.incident_id.in_(ids))
        .order_by(EscalationStep.incident_id, EscalationStep.key)
    ).all()
    return {
        "incidents": [
            (i.id, i.service_notice, i.dispatch_due_at, i.resolve_due_at) for i in incidents
        ],
        "ladder": [
            (s.incident_id, s.key, s.status, s.reason, s.due_at, s.deadline_at) for s in ladder
        ],
    }


def test_planning_many_incidents_leaves_what_planning_each_alone_leaves(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    start = clock.now()
    ids = _setup(sessions, start)
    # Two potholes change while the flood is on, two after it ended, the far one and a
    # flooding while it is on, the other flooding after it ended.
    during, after = start + timedelta(minutes=10), start + timedelta(minutes=45)
    changed_at = dict(zip(ids, [during, after, during, after, during, during, after], strict=True))

    with sessions() as session:
        incidents = {i.id: i for i in session.scalars(sa.select(Incident))}
        for incident_id in ids:
            plan_incident(session, incidents[incident_id], now=changed_at[incident_id])
        alone = snapshot(session, ids)
        session.rollback()
    with sessions() as session:
        incidents = {i.id: i for i in session.scalars(sa.select(Incident))}
        plan_incidents(session, [incidents[i] for i in ids], now=after, changed_at=changed_at)
        together = snapshot(session, ids)
        session.rollback()

    assert together == alone
    # The notice stretched the potholes planned while the flood was on, and only them.
    resolve = {row[0]: row[3] for row in alone["incidents"]}
    notices = {row[0]: row[1] for row in alone["incidents"]}
    assert notices[ids[0]] and notices[ids[1]] and not notices[ids[4]]
    opened_at = start + timedelta(minutes=1)
    assert resolve[ids[0]] - opened_at == 2 * (resolve[ids[1]] - opened_at)
    assert resolve[ids[4]] == resolve[ids[1]]
    # The flooding planned while the flood is on has its tighter dispatch window; the
    # one planned after it ended, the usual one.
    dispatch = {row[0]: row[2] for row in alone["incidents"]}
    assert dispatch[ids[5]] - opened_at == timedelta(seconds=150)
    assert dispatch[ids[6]] - opened_at == timedelta(seconds=300)


def test_planning_many_incidents_looks_the_emergencies_up_once(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    start = clock.now()
    ids = _setup(sessions, start)
    counts = []
    for some in ([ids[0], ids[5]], ids):
        with sessions() as session:
            incidents = [
                i for i in session.scalars(sa.select(Incident).where(Incident.id.in_(some)))
            ]
            with counting_statements(session.get_bind()) as sent:  # type: ignore[arg-type]
                plan_incidents(session, incidents, now=start + timedelta(minutes=10))
            counts.append(sent[0])
            session.rollback()
    assert counts[0] == counts[1]
