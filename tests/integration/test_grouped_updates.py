"""``ChangesSession.flush`` on SpatiaLite: changed objects go out as one UPDATE per table
and set of changed columns, new ones (their ids given) as one INSERT per table after
them, and the tables and the objects end up exactly as the ORM's own flush leaves them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from incidents import flooding_incident
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError
from statements import statements_matching

from fieldops.crews.models import Crew, CrewPosition, CrewStatus
from fieldops.db.engine import make_sessionmaker
from fieldops.db.ids import give_ids
from fieldops.db.updates import ChangesSession
from fieldops.incidents.models import Incident, IncidentStatus

START = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)


def _incidents(session: Session, count: int) -> list[Incident]:
    """``count`` new incidents, flushed (by the ORM: they are new)."""
    incidents = [
        flooding_incident(session, lon=-73.58 + n / 1000, reported_at=START, now=START)
        for n in range(count)
    ]
    session.add_all(incidents)
    session.flush()
    return incidents


def _updates(engine: Engine) -> Any:
    return statements_matching(engine, lambda text: text.startswith("update"))


def _stored(
    session: Session, model: type[Crew | Incident], ids: list[int]
) -> list[tuple[Any, ...]]:
    table: sa.Table = model.__table__  # type: ignore[assignment]
    columns = [c for c in table.columns if c.name != "geom"]
    return [
        tuple(row)
        for row in session.execute(
            sa.select(*columns).where(table.c.id.in_(ids)).order_by(table.c.id)
        )
    ]


def test_changes_alternating_by_id_go_out_as_one_update_per_set_of_columns(
    spatialite_session: Session, spatialite_engine: Engine
) -> None:
    assert isinstance(spatialite_session, ChangesSession)
    incidents = _incidents(spatialite_session, 6)
    later = START + timedelta(minutes=5)
    for n, incident in enumerate(incidents):
        if n % 2:
            incident.priority = 1
        else:
            incident.status = IncidentStatus.ASSIGNED
            incident.updated_at = later
    # Set and set back: the ORM writes nothing for it, and neither do we.
    incidents[1].address, incidents[1].address = "ailleurs", incidents[1].address
    with _updates(spatialite_engine) as updates:
        spatialite_session.flush()
    # The ORM's flush: a new statement at every change of columns, six here.
    assert updates == [
        "update incidents set priority=? where incidents.id = ?",
        "update incidents set status=?, updated_at=? where incidents.id = ?",
    ]
    assert not spatialite_session.dirty
    spatialite_session.expire_all()
    stored = {i.id: (i.status, i.priority, i.updated_at, i.address) for i in incidents}
    for n, incident in enumerate(incidents):
        if n % 2:
            assert stored[incident.id] == (IncidentStatus.OPEN, 1, START, "rue Saint-Denis")
        else:
            assert stored[incident.id] == (IncidentStatus.ASSIGNED, 2, later, "rue Saint-Denis")


def test_a_savepoint_rolled_back_expires_what_was_written_within_it(
    spatialite_session: Session,
) -> None:
    (incident,) = _incidents(spatialite_session, 1)
    with spatialite_session.begin_nested() as savepoint:
        incident.priority = 1
        spatialite_session.flush()
        assert incident.priority == 1
        savepoint.rollback()
    # The object reads the row again: without the expiry it would still say 1.
    assert incident.priority == 2
    assert (
        spatialite_session.scalar(sa.select(Incident.priority).where(Incident.id == incident.id))
        == 2
    )


def test_an_expired_object_is_written_by_its_identity(spatialite_session: Session) -> None:
    (incident,) = _incidents(spatialite_session, 1)
    incident_id = incident.id
    spatialite_session.expire(incident)
    incident.priority = 1  # set without loading: the object holds no id now
    spatialite_session.flush()
    assert (
        spatialite_session.scalar(sa.select(Incident.priority).where(Incident.id == incident_id))
        == 1
    )


def test_a_savepoint_rolled_back_after_an_inner_one_was_released_expires_its_writes(
    spatialite_session: Session,
) -> None:
    (incident,) = _incidents(spatialite_session, 1)
    outer = spatialite_session.begin_nested()
    incident.priority = 1
    spatialite_session.flush()
    with (
        spatialite_session.begin_nested()
    ):  # released: its commit must not forget the outer's writes
        pass
    outer.rollback()
    assert incident.priority == 2


def test_a_released_savepoint_keeps_its_changes(spatialite_session: Session) -> None:
    (incident,) = _incidents(spatialite_session, 1)
    with spatialite_session.begin_nested():
        incident.priority = 1
        spatialite_session.flush()
    assert incident.priority == 1
    assert (
        spatialite_session.scalar(sa.select(Incident.priority).where(Incident.id == incident.id))
        == 1
    )


def test_a_row_gone_from_the_table_is_stale_data(spatialite_session: Session) -> None:
    incident, other = _incidents(spatialite_session, 2)
    # Behind the spatialite_session's back: it still holds the object.
    spatialite_session.execute(sa.text("DELETE FROM incidents WHERE id = :id"), {"id": incident.id})
    incident.priority, other.priority = 1, 1
    with pytest.raises(StaleDataError, match="expected to update 2 row"):
        spatialite_session.flush()


def test_a_sql_expression_and_a_new_object_go_to_the_orm_flush(
    spatialite_session: Session, spatialite_engine: Engine
) -> None:
    first, second = _incidents(spatialite_session, 2)
    first.report_count = Incident.report_count + 2
    with _updates(spatialite_engine) as updates:
        spatialite_session.flush()
    assert updates == [
        "update incidents set report_count=(incidents.report_count + ?) where incidents.id = ?"
    ]
    spatialite_session.refresh(first)
    assert first.report_count == 3
    # A new object without its id: the ORM writes it, and the changed objects with it.
    second.priority = 4
    (third,) = _incidents(spatialite_session, 1)
    assert second.priority == 4 and not spatialite_session.dirty
    assert (
        spatialite_session.scalar(sa.select(Incident.priority).where(Incident.id == second.id)) == 4
    )
    assert third.id is not None


def _copy(crew: Crew, name: str) -> Crew:
    return Crew(
        **{
            c.key: getattr(crew, c.key)
            for c in Crew.__table__.columns
            if c.key not in ("id", "name")
        },
        name=name,
    )


def test_a_unique_value_freed_and_taken_in_one_flush_is_the_orms_to_write(
    spatialite_session: Session, spatialite_engine: Engine
) -> None:
    first, second = spatialite_session.scalars(sa.select(Crew).order_by(Crew.id).limit(2)).all()
    name = first.name
    # By id, the ORM frees the name before it is taken; grouped by columns, the second
    # crew's row (two columns changed) would go first and collide.
    first.name = f"{name} (ancienne équipe)"
    second.name, second.capacity = name, second.capacity + 1
    successor = _copy(first, f"{name} (relève)")
    spatialite_session.add(successor)
    give_ids(spatialite_session, [successor])
    spatialite_session.flush()
    assert not spatialite_session.new and not spatialite_session.dirty
    names = dict(
        spatialite_session.execute(
            sa.select(Crew.id, Crew.name).where(Crew.id.in_([first.id, second.id]))
        ).all()
    )
    assert names == {first.id: f"{name} (ancienne équipe)", second.id: name}


def test_a_failed_flush_writes_nothing_and_wants_a_rollback(spatialite_session: Session) -> None:
    crew = spatialite_session.scalars(sa.select(Crew).order_by(Crew.id).limit(1)).one()
    stored = crew.capacity
    position = CrewPosition(crew_id=crew.id, lon=-73.6, lat=45.5, fix_at=START, received_at=START)
    spatialite_session.add(position)
    spatialite_session.flush()
    crew.capacity = stored + 5
    twin = CrewPosition(crew_id=crew.id, lon=-73.7, lat=45.6, fix_at=START, received_at=START)
    spatialite_session.add(twin)  # the same crew and instant: refused by the table
    give_ids(spatialite_session, [twin])
    with pytest.raises(sa.exc.IntegrityError):
        spatialite_session.flush()
    # As after the ORM's failed flush: nothing goes on until the spatialite_session is rolled back,
    # and the UPDATE that went before the refused INSERT is not kept.
    with pytest.raises(sa.exc.InvalidRequestError, match="rolled back"):
        spatialite_session.commit()
    spatialite_session.rollback()
    assert spatialite_session.scalar(sa.select(Crew.capacity).where(Crew.id == crew.id)) == stored


def test_a_column_given_as_another_column_is_the_orms_to_write(spatialite_session: Session) -> None:
    crew = spatialite_session.scalars(sa.select(Crew).order_by(Crew.id).limit(1)).one()
    crew.last_lon = Crew.depot_lon  # type: ignore[assignment]
    spatialite_session.flush()
    assert (
        spatialite_session.scalar(sa.select(Crew.last_lon).where(Crew.id == crew.id))
        == crew.depot_lon
    )


def test_hooks_on_the_flush_or_on_updates_are_heard(spatialite_session: Session) -> None:
    crew = spatialite_session.scalars(sa.select(Crew).order_by(Crew.id).limit(1)).one()
    heard: list[str] = []

    def flushing(*_: Any) -> None:
        heard.append("flush")

    sa.event.listen(spatialite_session, "before_flush", flushing)
    crew.capacity += 1
    spatialite_session.flush()
    sa.event.remove(spatialite_session, "before_flush", flushing)
    assert heard == ["flush"]

    def updating(*_: Any) -> None:
        heard.append("update")

    sa.event.listen(Crew, "before_update", updating)
    try:
        crew.capacity += 1
        spatialite_session.flush()
    finally:
        sa.event.remove(Crew, "before_update", updating)
    assert heard == ["flush", "update"]


def test_a_foreign_key_changed_to_a_new_row_is_the_orms_to_write(
    spatialite_session: Session,
) -> None:
    crew = spatialite_session.scalars(sa.select(Crew).order_by(Crew.id).limit(1)).one()
    position = CrewPosition(crew_id=crew.id, lon=-73.6, lat=45.5, fix_at=START, received_at=START)
    spatialite_session.add(position)
    spatialite_session.flush()
    successor = _copy(crew, f"{crew.name} bis")
    spatialite_session.add(successor)
    give_ids(spatialite_session, [successor])
    # The position now names a crew not yet in the table: it must go in first.
    position.crew_id = successor.id
    spatialite_session.flush()
    assert (
        spatialite_session.scalar(
            sa.select(CrewPosition.crew_id).where(CrewPosition.id == position.id)
        )
        == successor.id
    )


# --- the same tables as the ORM's flush, for any changes --------------------------------

_CREW_CHANGES = {
    "status": st.sampled_from(list(CrewStatus)),
    "capacity": st.integers(1, 5),
    "skills": st.lists(st.sampled_from(["roads", "water", "trees", "signals"]), max_size=3),
    "last_lon": st.none() | st.floats(-74.0, -73.4),
    "last_lat": st.none() | st.floats(45.4, 45.7),
    "last_fix_at": st.none() | st.integers(0, 7200).map(lambda s: START + timedelta(seconds=s)),
}
_INCIDENT_CHANGES = {
    "status": st.sampled_from(list(IncidentStatus)),
    "priority": st.integers(1, 4),
    "address": st.sampled_from(["rue Saint-Denis", "boulevard Pie-IX", ""]),
    "updated_at": st.integers(0, 7200).map(lambda s: START + timedelta(seconds=s)),
}


def _changes(kinds: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=kinds)


# (which object, its changes); an object changed twice takes the later change on top.
_CHANGES = st.lists(
    st.one_of(
        st.tuples(st.just("crew"), st.integers(0, 5), _changes(_CREW_CHANGES)),
        st.tuples(st.just("incident"), st.integers(0, 5), _changes(_INCIDENT_CHANGES)),
    ),
    max_size=14,
)


# New positions of some of the crews: (which crew, longitude).
_FIXES = st.lists(st.tuples(st.integers(0, 5), st.floats(-74.0, -73.4)), max_size=4)


def _after_flush(
    make: Callable[[], Session],
    changes: list[tuple[str, int, dict[str, Any]]],
    fixes: list[tuple[int, float]],
) -> tuple[list[Any], ...]:
    """The stored rows and the objects' values after ``changes``, new ``fixes`` (their ids
    given) and a flush; nothing kept."""
    with make() as session:
        crews = list(session.scalars(sa.select(Crew).order_by(Crew.id).limit(6)))
        incidents = _incidents(session, 6)
        for kind, n, values in changes:
            target = crews[n] if kind == "crew" else incidents[n]
            for key, value in values.items():
                setattr(target, key, value)
        positions = [
            CrewPosition(
                crew_id=crews[n].id,
                lon=lon,
                lat=45.5,
                fix_at=START + timedelta(seconds=k),
                received_at=START,
            )
            for k, (n, lon) in enumerate(fixes)
        ]
        session.add_all(positions)
        give_ids(session, positions)
        session.flush()
        assert not session.dirty and not session.new
        objects = [
            tuple(getattr(o, c.key) for c in o.__table__.columns if c.key not in ("id", "geom"))
            for o in [*crews, *incidents, *positions]
        ]
        rows = (
            _stored(session, Crew, [c.id for c in crews]),
            _stored(session, Incident, [i.id for i in incidents]),
            _stored(session, CrewPosition, [p.id for p in positions]),
        )
        session.rollback()
    # Incident ids differ between the two runs (each draws its own): compare without them.
    return objects, rows[0], [row[1:] for row in rows[1]], rows[2]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(changes=_CHANGES, fixes=_FIXES)
def test_tables_and_objects_end_as_after_the_orms_flush(
    spatialite_engine: Engine,
    changes: list[tuple[str, int, dict[str, Any]]],
    fixes: list[tuple[int, float]],
) -> None:
    ours = _after_flush(make_sessionmaker(spatialite_engine), changes, fixes)
    orms = _after_flush(
        sessionmaker(spatialite_engine, class_=Session, autoflush=False), changes, fixes
    )
    assert ours == orms
