"""The one intake path: Open311, the dispatcher API, CSV imports and drills all call it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from fieldops.db.base import ewkt_point
from fieldops.emergencies.service import attach_to_emergency
from fieldops.errors import FieldProblem, InvalidInput, OutsideServiceArea
from fieldops.escalation.service import plan_incident
from fieldops.geo.crs import local_metres
from fieldops.geo.duplicates import bbox_around, nearest_within
from fieldops.incidents import repo as incidents_repo
from fieldops.incidents.models import Channel, Incident, Report
from fieldops.incidents.service import NewIncident, attach_report, open_incident, record_event
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport


class UnknownService(InvalidInput):
    """The service code names no service in the catalogue."""


@dataclass(frozen=True)
class IntakeOutcome:
    report: Report
    incident: Incident
    merged: bool  # joined an open incident instead of opening one
    created: bool  # False when the report was already there (a re-sent source_ref)


def submit_report(
    session: Session,
    new: NewReport,
    *,
    context: IntakeContext,
    actor: str,
    now: datetime,
    key_id: int | None = None,
) -> IntakeOutcome:
    """Take in one report: validate, find its district, merge it into an open incident of
    the same group nearby or open a new incident, and log the event. Flushes, never commits.
    """
    new.validate()
    rules = context.services.get(new.service_code)
    if rules is None:
        raise UnknownService.for_field("service_code", f"no service {new.service_code!r}")

    if new.source_ref is not None:
        already = incidents_repo.find_report_by_source(session, new.channel, new.source_ref)
        if already is not None:
            incident = incidents_repo.get_incident(session, already.incident_id)
            assert incident is not None
            return IntakeOutcome(already, incident, merged=False, created=False)

    district_id = context.districts.locate(new.lon, new.lat)
    if district_id is None:
        raise OutsideServiceArea(
            f"({new.lat}, {new.lon}) is outside every district served",
            [FieldProblem("lat/long", "outside the city's service area: no district contains it")],
        )

    requested_at = (new.requested_at or now).astimezone(UTC)
    box = bbox_around(new.lon, new.lat, rules.duplicate_radius_m)
    incidents_repo.lock_duplicate_area(session, rules.group, box)
    candidates = incidents_repo.open_incidents_near(
        session,
        group=rules.group,
        bbox=box,
        reported_since=requested_at - rules.duplicate_window,
    )
    match = (
        nearest_within(
            new.lon,
            new.lat,
            [c.lon for c in candidates],
            [c.lat for c in candidates],
            rules.duplicate_radius_m,
        )
        if candidates
        else None
    )

    if match is None:
        incident = open_incident(
            session,
            NewIncident(
                service_code=rules.code,
                service_group=rules.group,
                priority=new.priority or rules.default_priority,
                district_id=district_id,
                lon=new.lon,
                lat=new.lat,
                address=new.address,
                description=new.description,
                reported_at=requested_at,
            ),
            actor=actor,
            now=now,
        )
    else:
        found = incidents_repo.lock_incident(session, candidates[match].id)
        assert found is not None
        incident = found

    report = Report(
        incident_id=incident.id,
        service_code=rules.code,
        channel=new.channel,
        source_ref=new.source_ref,
        district_id=district_id,
        lon=new.lon,
        lat=new.lat,
        geom=ewkt_point(new.lon, new.lat),
        address=new.address,
        address_id=new.address_id,
        zipcode=new.zipcode,
        description=new.description,
        media_url=new.media_url,
        attributes=dict(new.attributes),
        requested_at=requested_at,
        received_at=now,
        reporter_first_name=new.reporter_first_name,
        reporter_last_name=new.reporter_last_name,
        reporter_email=new.reporter_email,
        reporter_phone=new.reporter_phone,
        device_id=new.device_id,
        account_id=new.account_id,
        submitted_by_key_id=key_id,
    )
    session.add(report)
    session.flush()

    if match is None:
        record_event(
            session,
            incident,
            kind="opened",
            actor=actor,
            now=now,
            data={"report_id": str(report.id), "channel": str(new.channel)},
        )
        # Inside an active emergency: join it (tighter deadlines) or carry its notice.
        attach_to_emergency(session, incident, actor=actor, now=now)
        if new.channel != Channel.IMPORT:
            # Imported history is context for the map and reports, not live work: its
            # deadlines passed long ago and nobody is to be paged for them now.
            plan_incident(session, incident, now=now, fresh=True)
    else:
        dx, dy = local_metres(incident.lon, incident.lat, new.lon, new.lat)
        attach_report(
            session,
            incident,
            report,
            distance_m=float((dx**2 + dy**2) ** 0.5),
            actor=actor,
            now=now,
        )
    session.flush()
    return IntakeOutcome(report, incident, merged=match is not None, created=True)
