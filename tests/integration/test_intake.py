"""The intake service on both backends: districts, duplicates, events, idempotent re-sends."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.clock import ManualClock
from fieldops.errors import OutsideServiceArea
from fieldops.incidents.models import Channel, Incident, IncidentEvent, IncidentStatus, Report
from fieldops.incidents.service import IncidentChange, update_incident
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import UnknownService, submit_report

PLATEAU = (-73.5800, 45.5230)  # Le Plateau-Mont-Royal, near parc La Fontaine
OUTREMONT = (-73.6080, 45.5180)


def metres_east(lon: float, lat: float, metres: float) -> tuple[float, float]:
    # Fine for a few hundred metres at Montréal's latitude.
    return lon + metres / 78_200.0, lat


def report(
    service: str = "flooding",
    at: tuple[float, float] = PLATEAU,
    channel: Channel = Channel.DISPATCHER,
    **extra: object,
) -> NewReport:
    return NewReport(service_code=service, lon=at[0], lat=at[1], channel=channel, **extra)  # type: ignore[arg-type]


def count(session: Session, model: type) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


@pytest.fixture
def context(session: Session) -> IntakeContext:
    return IntakeContext.load(session)


def submit(session: Session, context: IntakeContext, clock: ManualClock, new: NewReport):  # type: ignore[no-untyped-def]
    outcome = submit_report(session, new, context=context, actor="test", now=clock.now())
    session.commit()
    return outcome


def test_report_lands_in_its_district_with_an_opened_event(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    outcome = submit(session, context, clock, report(at=OUTREMONT))
    assert context.district_names[outcome.incident.district_id] == "Outremont"
    assert outcome.report.district_id == outcome.incident.district_id
    assert (outcome.merged, outcome.created) == (False, True)
    assert outcome.incident.priority == context.services["flooding"].default_priority
    kinds = session.scalars(sa.select(IncidentEvent.kind)).all()
    assert kinds == ["opened"]


def test_point_outside_every_district_is_refused_and_writes_nothing(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    with pytest.raises(OutsideServiceArea, match="outside every district"):
        submit_report(
            session, report(at=(-73.0, 45.0)), context=context, actor="t", now=clock.now()
        )
    session.rollback()
    assert count(session, Incident) == count(session, Report) == 0


def test_unknown_service_names_the_field(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    with pytest.raises(UnknownService, match="service_code: no service 'lava'"):
        submit_report(session, report(service="lava"), context=context, actor="t", now=clock.now())


def test_same_group_within_radius_and_window_merges(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    first = submit(session, context, clock, report("flooding"))
    clock.advance(timedelta(hours=1))
    # sewer_backup shares the "water" group with flooding; 100 m is inside flooding's 150 m.
    second = submit(session, context, clock, report("sewer_backup", metres_east(*PLATEAU, 100)))
    assert second.merged and second.incident.id == first.incident.id
    session.expire_all()
    incident = session.get(Incident, first.incident.id)
    assert incident is not None and incident.report_count == 2
    assert incident.last_report_at == clock.now()
    assert second.report.id != first.report.id
    kinds = session.scalars(sa.select(IncidentEvent.kind).order_by(IncidentEvent.id)).all()
    assert kinds == ["opened", "report_merged"]


@pytest.mark.parametrize(
    ("service", "offset_m", "later"),
    [
        pytest.param("flooding", 170, timedelta(0), id="beyond-radius"),
        pytest.param("fallen_tree", 10, timedelta(0), id="other-group"),
        pytest.param("flooding", 10, timedelta(hours=13), id="after-window"),
    ],
)
def test_reports_that_do_not_merge(
    session: Session,
    context: IntakeContext,
    clock: ManualClock,
    service: str,
    offset_m: float,
    later: timedelta,
) -> None:
    first = submit(session, context, clock, report("flooding"))
    clock.advance(later)
    second = submit(session, context, clock, report(service, metres_east(*PLATEAU, offset_m)))
    assert not second.merged
    assert second.incident.id != first.incident.id
    assert count(session, Incident) == 2


def test_closed_incident_takes_no_new_reports(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    first = submit(session, context, clock, report("flooding"))
    update_incident(
        session,
        first.incident.id,
        IncidentChange(status=IncidentStatus.RESOLVED),
        actor="t",
        now=clock.now(),
    )
    session.commit()
    second = submit(session, context, clock, report("flooding"))
    assert not second.merged and second.incident.id != first.incident.id


def test_resent_source_ref_creates_nothing(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    new = report(channel=Channel.IMPORT, source_ref="montreal311:16-1")
    first = submit(session, context, clock, new)
    again = submit(session, context, clock, new)
    assert (again.created, again.report.id) == (False, first.report.id)
    assert count(session, Report) == 1


def test_invalid_fields_are_all_named(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    bad = report(at=(200.0, 95.0), description="x" * 4001)
    with pytest.raises(Exception, match=r"lat .*; long .*; description is 4001 characters") as info:
        submit_report(session, bad, context=context, actor="t", now=clock.now())
    assert [p.field for p in info.value.problems] == ["lat", "long", "description"]  # type: ignore[attr-defined]
