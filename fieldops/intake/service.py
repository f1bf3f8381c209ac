"""The one intake path: Open311, the dispatcher API, CSV imports and drills all call it.

``submit_many`` takes in a batch of reports in one transaction, set-based: one query
for re-sent reports, one lock statement, one duplicate search, one write of the new rows
(one statement on PostGIS, one INSERT per table on SpatiaLite), whatever the batch's
size. The outcome is the one the reports would have had taken in one after the other, in
order: a report may join an incident opened by an earlier report of the same batch.
``submit_report`` is a batch of one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from fieldops.db.base import ewkt_point
from fieldops.db.bulk import insert_pending
from fieldops.db.ids import give_ids
from fieldops.emergencies.models import Emergency
from fieldops.emergencies.repo import active_emergencies, holding, is_active
from fieldops.emergencies.service import attach_to_emergency
from fieldops.errors import FieldOpsError, FieldProblem, InvalidInput, OutsideServiceArea
from fieldops.escalation.models import EscalationStep
from fieldops.escalation.opening import Opened, plan_opened
from fieldops.escalation.service import StepRows, policy_in_force
from fieldops.geo.crs import local_metres
from fieldops.geo.duplicates import bbox_around, nearest_within
from fieldops.incidents import repo as incidents_repo
from fieldops.incidents.models import Channel, Incident, IncidentEvent, Report
from fieldops.incidents.repo import Candidate, DuplicateSearch
from fieldops.incidents.service import (
    EventRows,
    NewIncident,
    attach_report,
    new_incident,
    record_event,
)
from fieldops.intake.context import IntakeContext, ServiceRules
from fieldops.intake.schemas import NewReport


class UnknownService(InvalidInput):
    """The service code names no service in the catalogue."""


@dataclass(frozen=True)
class IntakeOutcome:
    report: Report
    incident: Incident
    merged: bool  # joined an open incident instead of opening one
    created: bool  # False when the report was already there (a re-sent source_ref)


@dataclass(frozen=True)
class Submission:
    """One report to take in, who sent it and when it arrived."""

    new: NewReport
    actor: str
    now: datetime
    key_id: int | None = None


Result = IntakeOutcome | FieldOpsError


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
    the same group nearby or open a new incident, and log the event. Flushes, never
    commits; raises the report's error (InvalidInput, OutsideServiceArea...)."""
    (result,) = submit_many(session, [Submission(new, actor, now, key_id)], context=context)
    if isinstance(result, FieldOpsError):
        raise result
    return result


@dataclass
class _Accepted:
    """A report that passed the checks, on its way through the batch."""

    position: int
    submission: Submission
    rules: ServiceRules
    district_id: int
    search: DuplicateSearch
    requested_at: datetime
    # What it merges into: a stored incident, or the one an earlier report of the batch opens.
    joins: Candidate | None = None
    opener: _Accepted | None = None
    distance_m: float = 0.0
    incident: Incident | None = None
    report: Report | None = None


def submit_many(
    session: Session, submissions: Sequence[Submission], *, context: IntakeContext
) -> list[Result]:
    """Take in ``submissions`` in one transaction, in order: each gets its outcome or its
    error (a bad report never stops the others). Flushes, never commits."""
    results: list[Result | None] = [None] * len(submissions)
    checked: list[_Checked] = []
    for position, submission in enumerate(submissions):
        try:
            checked.append(_check(position, submission, context))
        except FieldOpsError as error:
            results[position] = error
    # A re-sent report is what was stored, wherever it says it is now.
    checked, repeated = _drop_resent(session, checked, results)
    accepted: list[_Accepted] = []
    for one in checked:
        try:
            accepted.append(_place(one, context))
        except FieldOpsError as error:
            results[one.position] = error
    if accepted:
        _match_duplicates(session, accepted)
        _write(session, accepted)
        for item in accepted:
            assert item.report is not None and item.incident is not None
            results[item.position] = IntakeOutcome(
                item.report, item.incident, merged=item.joins is not None, created=True
            )
    for position, first in repeated:  # the same source_ref twice in one batch
        outcome = results[first]
        results[position] = (
            IntakeOutcome(outcome.report, outcome.incident, merged=False, created=False)
            if isinstance(outcome, IntakeOutcome)
            else outcome
        )
    return [result for result in results if result is not None]


@dataclass(frozen=True)
class _Checked:
    position: int
    submission: Submission
    rules: ServiceRules


def _check(position: int, submission: Submission, context: IntakeContext) -> _Checked:
    """The report's fields and its service."""
    new = submission.new
    new.validate()
    rules = context.services.get(new.service_code)
    if rules is None:
        raise UnknownService.for_field("service_code", f"no service {new.service_code!r}")
    return _Checked(position, submission, rules)


def _place(checked: _Checked, context: IntakeContext) -> _Accepted:
    """The report's district and its duplicate search box."""
    submission, rules = checked.submission, checked.rules
    new = submission.new
    district_id = context.districts.locate(new.lon, new.lat)
    if district_id is None:
        raise OutsideServiceArea(
            f"({new.lat}, {new.lon}) is outside every district served",
            [FieldProblem("lat/long", "outside the city's service area: no district contains it")],
        )
    requested_at = (new.requested_at or submission.now).astimezone(UTC)
    search = DuplicateSearch(
        group=rules.group,
        bbox=bbox_around(new.lon, new.lat, rules.duplicate_radius_m),
        since=requested_at - rules.duplicate_window,
    )
    return _Accepted(checked.position, submission, rules, district_id, search, requested_at)


def _drop_resent(
    session: Session, accepted: list[_Checked], results: list[Result | None]
) -> tuple[list[_Checked], list[tuple[int, int]]]:
    """Answer reports whose (channel, source_ref) is already stored with what is stored.

    Returns the reports still to take in, and (position, position of the first) for each
    source_ref repeated within the batch."""
    refs = [
        (item.submission.new.channel, item.submission.new.source_ref)
        for item in accepted
        if item.submission.new.source_ref is not None
    ]
    if not refs:
        return accepted, []
    stored = incidents_repo.reports_by_source(session, [(c, r) for c, r in refs if r is not None])
    incidents = incidents_repo.get_incidents(session, [r.incident_id for r in stored.values()])
    remaining: list[_Checked] = []
    first_of: dict[tuple[Channel, str], int] = {}
    repeated: list[tuple[int, int]] = []
    for item in accepted:
        ref = item.submission.new.source_ref
        if ref is None:
            remaining.append(item)
            continue
        pair = (item.submission.new.channel, ref)
        if pair in stored:
            report = stored[pair]
            results[item.position] = IntakeOutcome(
                report, incidents[report.incident_id], merged=False, created=False
            )
        elif pair in first_of:
            repeated.append((item.position, first_of[pair]))
        else:
            first_of[pair] = item.position
            remaining.append(item)
    return remaining, repeated


def _match_duplicates(session: Session, accepted: list[_Accepted]) -> None:
    """Decide, in order, which open incident each report joins, if any.

    Incidents opened by earlier reports of the batch are candidates too, after every
    stored one (their ids will be higher): the same choice as one report at a time."""
    searches = [item.search for item in accepted]
    incidents_repo.lock_duplicate_areas(session, searches)
    stored = incidents_repo.open_incidents_near(session, searches)
    opened: list[tuple[Candidate, _Accepted]] = []
    for item in accepted:
        new = item.submission.new
        pool: list[tuple[Candidate, _Accepted | None]] = [
            (c, None) for c in stored if c.answers(item.search)
        ]
        pool += [(c, opener) for c, opener in opened if c.answers(item.search)]
        match = (
            nearest_within(
                new.lon,
                new.lat,
                [c.lon for c, _ in pool],
                [c.lat for c, _ in pool],
                item.rules.duplicate_radius_m,
            )
            if pool
            else None
        )
        if match is None:
            fresh = Candidate(0, item.rules.group, new.lon, new.lat, item.requested_at)
            opened.append((fresh, item))
            continue
        item.joins, item.opener = pool[match]
        item.joins.last_report_at = max(item.joins.last_report_at, item.requested_at)
        dx, dy = local_metres(item.joins.lon, item.joins.lat, new.lon, new.lat)
        item.distance_m = float((dx**2 + dy**2) ** 0.5)


def _write(session: Session, accepted: list[_Accepted]) -> None:
    """Open the new incidents, store every report, log the events, attach to emergencies
    and plan the escalation ladders: the whole batch's new rows in one write (one statement
    on PostGIS, one INSERT per table on SpatiaLite).

    Everything the new rows need is read first (the incidents joined, locked; the active
    emergencies; the policy), then the rows are built in memory, deadlines included, and
    written without the ORM's unit of work (``insert_pending``; the events and steps as
    plain rows); only the incidents joined go out as UPDATEs, with the final flush."""
    # The caller's own pending changes go out first, by the ordinary flush (their new rows
    # numbered first, as every flush here numbers them): what insert_pending writes below
    # must be this batch's rows alone.
    give_ids(session, session.new)
    session.flush()
    openers = [item for item in accepted if item.joins is None]
    joined = incidents_repo.lock_incidents(
        session,
        [item.joins.id for item in accepted if item.joins is not None and item.opener is None],
    )
    live = [item for item in openers if item.submission.new.channel != Channel.IMPORT]
    active = (
        active_emergencies(session, now=max(item.submission.now for item in openers))
        if openers
        else []
    )
    policy = policy_in_force(session) if live else None
    with session.no_autoflush:
        for item in openers:
            item.incident = _incident(item)
        session.add_all(item.incident for item in openers)
        for item in accepted:
            if item.opener is not None:
                item.incident = item.opener.incident
            elif item.joins is not None:
                item.incident = joined[item.joins.id]
            assert item.incident is not None
            item.report = _report(item, item.incident)
        session.add_all(item.report for item in accepted)
        give_ids(session, session.new)
        for item in accepted:  # the incidents opened here have their ids only now
            assert item.report is not None and item.incident is not None
            item.report.incident_id = item.incident.id
        to_plan: list[Opened] = []
        log: EventRows = []
        for item in accepted:
            _log(session, item, active, to_plan, log)
        steps: StepRows = []
        if to_plan:
            plan_opened(session, to_plan, policy=policy, rows=steps)
        # The callers get the incidents and reports; the events and steps only need writing
        # (as plain rows, numbered by the database in their order).
        insert_pending(
            session, keep=(Incident, Report), rows={IncidentEvent: log, EscalationStep: steps}
        )
    session.flush()


def _incident(item: _Accepted) -> Incident:
    new = item.submission.new
    return new_incident(
        NewIncident(
            service_code=item.rules.code,
            service_group=item.rules.group,
            priority=new.priority or item.rules.default_priority,
            district_id=item.district_id,
            lon=new.lon,
            lat=new.lat,
            address=new.address,
            description=new.description,
            reported_at=item.requested_at,
        ),
        now=item.submission.now,
    )


def _report(item: _Accepted, incident: Incident) -> Report:
    new, submission = item.submission.new, item.submission
    return Report(
        incident_id=incident.id,
        service_code=item.rules.code,
        channel=new.channel,
        source_ref=new.source_ref,
        district_id=item.district_id,
        lon=new.lon,
        lat=new.lat,
        geom=ewkt_point(new.lon, new.lat),
        address=new.address,
        address_id=new.address_id,
        zipcode=new.zipcode,
        description=new.description,
        media_url=new.media_url,
        attributes=dict(new.attributes),
        requested_at=item.requested_at,
        received_at=submission.now,
        reporter_first_name=new.reporter_first_name,
        reporter_last_name=new.reporter_last_name,
        reporter_email=new.reporter_email,
        reporter_phone=new.reporter_phone,
        device_id=new.device_id,
        account_id=new.account_id,
        submitted_by_key_id=submission.key_id,
    )


def _log(
    session: Session,
    item: _Accepted,
    active: Sequence[Emergency],
    to_plan: list[Opened],
    log: EventRows,
) -> None:
    """The report's event; for a new incident, its emergency and, later, its ladder."""
    incident, report = item.incident, item.report
    assert incident is not None and report is not None
    new, actor, now = item.submission.new, item.submission.actor, item.submission.now
    if item.joins is not None:
        attach_report(
            session, incident, report, distance_m=item.distance_m, actor=actor, now=now, rows=log
        )
        return
    record_event(
        session,
        incident,
        kind="opened",
        actor=actor,
        now=now,
        data={"report_id": str(report.id), "channel": str(new.channel)},
        rows=log,
    )
    # Inside an active emergency: join it (tighter deadlines) or carry its notice.
    around = holding([e for e in active if is_active(e, now=now)], new.lon, new.lat)
    attach_to_emergency(session, incident, actor=actor, now=now, around=around, rows=log)
    if new.channel != Channel.IMPORT:
        # Imported history is context for the map and reports, not live work: its
        # deadlines passed long ago and nobody is to be paged for them now.
        to_plan.append(Opened(incident, now, around))
