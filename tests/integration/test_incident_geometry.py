"""Incidents and reports load without their stored point (Python reads lon and lat; the
point serves spatial SQL), and still give it when asked, on both backends."""

from __future__ import annotations

from geoalchemy2.shape import to_shape
from sqlalchemy.orm import Session
from statements import counting_statements, statements_matching

from fieldops.clock import ManualClock
from fieldops.errors import FieldOpsError
from fieldops.incidents.models import Channel, Incident, Report
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import Submission, submit_many


def test_an_incident_loads_without_its_point_and_reads_it_on_demand(
    session: Session, clock: ManualClock
) -> None:
    (taken,) = submit_many(
        session,
        [
            Submission(
                NewReport(
                    service_code="pothole", lon=-73.5673, lat=45.5017, channel=Channel.DISPATCHER
                ),
                "test",
                clock.now(),
            )
        ],
        context=IntakeContext.load(session),
    )
    assert not isinstance(taken, FieldOpsError)
    incident_id, report_id = taken.incident.id, taken.report.id
    session.flush()
    session.expunge_all()
    engine = session.get_bind()
    with statements_matching(engine, lambda s: "asewkb" in s) as points_read:
        incident = session.get(Incident, incident_id)
        report = session.get(Report, report_id)
        assert incident is not None and report is not None
        assert points_read == []
        with counting_statements(engine) as counted:
            point = to_shape(incident.geom)
        assert counted[0] == 1  # loaded when asked
        assert len(points_read) == 1
    assert (point.x, point.y) == (incident.lon, incident.lat) == (-73.5673, 45.5017)
    assert to_shape(report.geom).equals(point)
