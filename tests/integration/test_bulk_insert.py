"""``insert_pending`` on both backends: new objects written with one INSERT per table end
up exactly as a flush would leave them (stored, persistent, defaults filled in, changed
later by an ordinary flush)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from incidents import flooding_incident
from sqlalchemy.orm import Session, sessionmaker
from statements import counting_statements

from fieldops.clock import ManualClock
from fieldops.db.bulk import insert_pending
from fieldops.db.ids import give_ids
from fieldops.incidents.models import Channel, Incident, IncidentEvent, Report


def _incident(session: Session, clock: ManualClock, lon: float) -> Incident:
    return flooding_incident(
        session, lon=lon, reported_at=clock.now() - timedelta(minutes=5), now=clock.now()
    )


def _added(session: Session, clock: ManualClock, lon: float) -> Incident:
    """A new incident, in the session, with its id."""
    incident = _incident(session, clock, lon)
    session.add(incident)
    give_ids(session, [incident])
    return incident


def _event(incident: Incident, clock: ManualClock, kind: str) -> IncidentEvent:
    return IncidentEvent(incident_id=incident.id, at=clock.now(), actor="test", kind=kind)


def _report(incident: Incident, clock: ManualClock) -> Report:
    # Fields left unset (address_id, attributes, reporter fields...) take their defaults.
    return Report(
        incident_id=incident.id,
        service_code=incident.service_code,
        channel=Channel.DISPATCHER,
        district_id=incident.district_id,
        lon=incident.lon,
        lat=incident.lat,
        geom=incident.geom,
        requested_at=incident.opened_at,
        received_at=clock.now(),
    )


def test_pending_rows_are_stored_and_persistent_as_after_a_flush(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incidents = [_incident(session, clock, -73.58 + i / 1000) for i in range(3)]
        session.add_all(incidents)
        give_ids(session, incidents)
        reports = [_report(incident, clock) for incident in incidents]
        events = [_event(incident, clock, "opened") for incident in incidents]
        # Children first: the tables' order, not the session's, decides.
        session.add_all([*events, *reports])
        give_ids(session, session.new)
        with counting_statements(session.get_bind()) as statements:
            insert_pending(session)
        # One INSERT per table on SQLite; one statement for all three on PostgreSQL.
        postgres = session.get_bind().dialect.name == "postgresql"
        assert statements[0] == (1 if postgres else 3)
        assert not session.new and not session.dirty
        assert all(sa.inspect(row).persistent for row in [*incidents, *reports, *events])
        # Defaults are on the objects, as a flush puts them there, without a query.
        with counting_statements(session.get_bind()) as statements:
            assert reports[0].attributes == {} and reports[0].reporter_email == ""
            assert events[0].data == {}
        assert statements[0] == 0
        # A later change is an ordinary UPDATE of a stored row.
        incidents[0].report_count = 2
        session.commit()
        ids = [i.id for i in incidents]

    with sessions() as session:
        stored = session.scalars(sa.select(Incident).where(Incident.id.in_(ids))).all()
        assert sorted((i.id, i.report_count) for i in stored) == [
            (ids[0], 2),
            (ids[1], 1),
            (ids[2], 1),
        ]
        kept = session.scalars(sa.select(Report).where(Report.incident_id.in_(ids))).all()
        assert sorted(r.incident_id for r in kept) == ids
        opened = {i.id: i.opened_at for i in stored}
        assert all(r.requested_at == opened[r.incident_id] for r in kept)
        assert all(r.attributes == {} and r.channel == Channel.DISPATCHER for r in kept)


def test_a_new_row_without_its_id_is_refused_and_nothing_is_written(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _incident(session, clock, -73.57)
        session.add(incident)
        with pytest.raises(ValueError, match="incidents: a new row without its id"):
            insert_pending(session)
        session.rollback()
        assert session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 0


def test_a_refused_row_raises_the_error_an_insert_would_and_keeps_nothing(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        first = _added(session, clock, -73.57)
        insert_pending(session)
        session.commit()
        taken = first.id

    with sessions() as session:
        fresh = _incident(session, clock, -73.56)
        again = _incident(session, clock, -73.55)
        session.add_all([fresh, again])
        give_ids(session, [fresh])
        again.id = taken  # already stored: the primary key refuses it
        with pytest.raises(sa.exc.IntegrityError):
            insert_pending(session)
        session.rollback()
        assert session.scalars(sa.select(Incident.id)).all() == [taken]


def test_objects_of_classes_not_kept_are_written_and_leave_the_session(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _added(session, clock, -73.54)
        event = _event(incident, clock, "opened")
        session.add(event)
        give_ids(session, [event])
        insert_pending(session, keep=(Incident,))
        assert sa.inspect(incident).persistent and incident in session
        assert event not in session and not session.new
        session.commit()
        stored = session.scalars(
            sa.select(IncidentEvent).where(IncidentEvent.incident_id == incident.id)
        ).all()
        assert [(e.id, e.kind, e.data) for e in stored] == [(event.id, "opened", {})]


def test_rows_let_go_without_ids_are_numbered_by_the_database_in_order(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _added(session, clock, -73.53)
        kinds = ["opened", "report_merged", "assigned"]
        session.add_all(_event(incident, clock, kind) for kind in kinds)
        insert_pending(session, keep=(Incident,))
        # Numbered after every id the session gave: a later event follows them.
        later = _event(incident, clock, "note")
        session.add(later)
        give_ids(session, [later])
        insert_pending(session, keep=(Incident,))
        session.commit()
        stored = session.execute(
            sa.select(IncidentEvent.id, IncidentEvent.kind)
            .where(IncidentEvent.incident_id == incident.id)
            .order_by(IncidentEvent.id)
        ).all()
        assert [kind for _, kind in stored] == [*kinds, "note"]
        assert stored[-1].id == later.id


def test_rows_let_go_go_all_with_or_all_without_their_ids(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _added(session, clock, -73.52)
        numbered = _event(incident, clock, "opened")
        session.add(numbered)
        give_ids(session, [numbered])
        session.add(_event(incident, clock, "note"))
        with pytest.raises(ValueError, match="incident_events: some new rows have their ids"):
            insert_pending(session, keep=(Incident,))
        session.rollback()


def test_a_rolled_back_savepoint_forgets_the_rows_written_in_it(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        kept = _added(session, clock, -73.51)
        insert_pending(session)
        savepoint = session.begin_nested()
        dropped = _added(session, clock, -73.50)
        insert_pending(session)
        savepoint.rollback()
        # As for rows a flush inserted: gone from the session, and not found again.
        assert dropped not in session and kept in session
        assert session.get(Incident, dropped.id) is None
        session.commit()
        assert session.scalars(sa.select(Incident.id)).all() == [kept.id]


def test_a_savepoint_rolled_back_after_an_inner_one_was_released_forgets_its_rows(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        outer = session.begin_nested()
        dropped = _added(session, clock, -73.50)
        insert_pending(session)
        with session.begin_nested():  # released: its commit must not forget the outer's rows
            pass
        outer.rollback()
        assert dropped not in session and sa.inspect(dropped).transient
        assert session.get(Incident, dropped.id) is None
        session.rollback()


def test_a_rolled_back_transaction_forgets_the_rows_written_in_it(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _added(session, clock, -73.49)
        insert_pending(session)
        session.rollback()
        assert incident not in session and sa.inspect(incident).transient
        assert session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 0


def test_none_on_a_column_with_a_default_stores_the_default_as_a_flush_does(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _added(session, clock, -73.48)
        report = _report(incident, clock)
        report.address = None  # type: ignore[assignment]
        session.add(report)
        give_ids(session, [report])
        insert_pending(session)
        session.commit()
        address = session.scalar(sa.select(Report.address).where(Report.id == report.id))
        assert address == "" and report.address == ""


def test_points_are_stored_as_geometries_on_both_backends(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _added(session, clock, -73.4725)
        insert_pending(session)
        session.commit()
        x, y = session.execute(
            sa.select(sa.func.ST_X(Incident.geom), sa.func.ST_Y(Incident.geom)).where(
                Incident.id == incident.id
            )
        ).one()
        assert (x, y) == (-73.4725, 45.52)


def test_a_value_its_type_refuses_is_a_statement_error_and_nothing_is_written(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _added(session, clock, -73.47)
        incident.opened_at = incident.opened_at.replace(tzinfo=None)  # naive: refused
        with pytest.raises(sa.exc.StatementError, match="naive datetime"):
            insert_pending(session)
        session.rollback()
        assert session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 0


def test_a_relationship_set_instead_of_its_key_is_refused(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _added(session, clock, -73.46)
        insert_pending(session)
        report = _report(incident, clock)
        report.incident = incident
        session.add(report)
        give_ids(session, [report])
        with pytest.raises(TypeError, match="reports: incident is set"):
            insert_pending(session)
        session.rollback()


def test_values_of_different_python_types_in_one_column_are_stored_as_a_flush_stores_them(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    """PostgreSQL gets the rows as JSON and each value through its column's input: an int
    among floats, a StrEnum among strings, a JSON value (None too) are stored as a flush
    would have stored them one by one."""
    with sessions() as session:
        incidents = [_added(session, clock, -73.45), _added(session, clock, -73.44)]
        incidents[0].lon = -73  # an int in a float column
        incidents[1].address = Channel.OPEN311  # a StrEnum in a text column
        events = [_event(incidents[0], clock, "opened"), _event(incidents[1], clock, "opened")]
        events[0].data = None  # type: ignore[assignment]
        events[1].data = {"say": "ok", "n": [1, 2.5]}
        session.add_all(events)
        insert_pending(session, keep=(Incident,))
        session.commit()
        stored = session.execute(
            sa.select(Incident.lon, Incident.address).order_by(Incident.id)
        ).all()
        assert [tuple(row) for row in stored] == [(-73.0, "rue Saint-Denis"), (-73.44, "open311")]
        data = session.scalars(sa.select(IncidentEvent.data).order_by(IncidentEvent.id)).all()
        assert data == [None, {"say": "ok", "n": [1, 2.5]}]


def test_plain_rows_go_with_the_objects_in_their_order_defaults_filled_in(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _added(session, clock, -73.43)
        kinds = ["opened", "emergency_notice", "report_merged"]
        # "data" left out of the first: its column's default ({}), as an object gets it.
        log: list[dict[str, object]] = [
            {"incident_id": incident.id, "at": clock.now(), "actor": "test", "kind": kinds[0]},
            *(
                {"incident_id": incident.id, "at": clock.now(), "actor": "test", "kind": kind,
                 "data": {"n": n}}
                for n, kind in enumerate(kinds[1:], start=1)
            ),
        ]  # fmt: skip
        with counting_statements(session.get_bind()) as statements:
            insert_pending(session, keep=(Incident,), rows={IncidentEvent: log})
        postgres = session.get_bind().dialect.name == "postgresql"
        assert statements[0] == (1 if postgres else 2)  # the incident's table and the log's
        assert sa.inspect(incident).persistent and not session.new
        session.commit()
        stored = session.execute(
            sa.select(IncidentEvent.kind, IncidentEvent.data)
            .where(IncidentEvent.incident_id == incident.id)
            .order_by(IncidentEvent.id)
        ).all()
        assert [tuple(row) for row in stored] == [
            ("opened", {}),
            ("emergency_notice", {"n": 1}),
            ("report_merged", {"n": 2}),
        ]


def test_plain_rows_are_refused_with_objects_of_their_class_or_an_unknown_field(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        incident = _added(session, clock, -73.42)
        session.add(_event(incident, clock, "opened"))
        row = {"incident_id": incident.id, "at": clock.now(), "actor": "test", "kind": "note"}
        with pytest.raises(ValueError, match="incident_events: rows given and objects pending"):
            insert_pending(session, keep=(Incident,), rows={IncidentEvent: [row]})
        session.rollback()

    with sessions() as session:
        incident = _added(session, clock, -73.41)
        row = {"incident_id": incident.id, "at": clock.now(), "kind": "note", "colour": "red"}
        with pytest.raises(TypeError, match="incident_events: no column for colour"):
            insert_pending(session, keep=(Incident,), rows={IncidentEvent: [row]})
        session.rollback()
        assert session.scalar(sa.select(sa.func.count()).select_from(IncidentEvent)) == 0


def test_a_value_too_long_for_its_column_is_refused_as_an_insert_refuses_it(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    """PostgreSQL refuses text longer than a VARCHAR(n) column (a cast would have cut it
    short); SQLite stores it whole. insert_pending does what a flush does on each."""

    def outcome(write: Callable[[Session], None]) -> str:
        with sessions() as session:
            incident = _added(session, clock, -73.40)
            report = _report(incident, clock)
            report.zipcode = "H2X 1Y4, Montréal QC"  # 20 characters in a VARCHAR(16)
            session.add(report)
            give_ids(session, [report])
            try:
                write(session)
            except sa.exc.DBAPIError as error:
                session.rollback()
                return type(error).__name__
            session.commit()
            stored = session.scalar(sa.select(Report.zipcode).where(Report.id == report.id))
            assert stored is not None
            return stored

    flushed = outcome(lambda session: session.flush())
    bulk = outcome(insert_pending)
    assert bulk == flushed
    with sessions() as session:
        postgres = session.get_bind().dialect.name == "postgresql"
    assert bulk == ("DataError" if postgres else "H2X 1Y4, Montréal QC")


def test_a_float_json_cannot_carry_is_refused_and_nothing_is_written(
    sessions: sessionmaker[Session], clock: ManualClock
) -> None:
    with sessions() as session:
        if session.get_bind().dialect.name != "postgresql":
            pytest.skip("only PostgreSQL's rows go as JSON")
        incident = _added(session, clock, -73.39)
        incident.lon = float("nan")  # JSON would make it null
        with pytest.raises(sa.exc.StatementError, match="nan cannot be written in a batch"):
            insert_pending(session)
        session.rollback()
        assert session.scalar(sa.select(sa.func.count()).select_from(Incident)) == 0
