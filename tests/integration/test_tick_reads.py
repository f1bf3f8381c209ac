"""What every scheduler tick reads is found through an index, on both backends: the open
incidents without a crew (a batch round's backlog) and the active assignments. Both tables
grow all day while what these reads return stays small; a scan would cost more at every tick.

Each read's own statement is caught as the code sends it and explained by the database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from assignments import pending_assignment
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew
from fieldops.db.ids import give_ids
from fieldops.dispatch import repo
from fieldops.dispatch.models import AssignmentStatus
from fieldops.errors import FieldOpsError
from fieldops.incidents.models import Channel, IncidentStatus
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import Submission, submit_many


@contextmanager
def sent_statements(session: Session) -> Iterator[list[tuple[str, Any]]]:
    """Every statement the session's connection sends meanwhile, with its parameters."""
    sent: list[tuple[str, Any]] = []
    connection = session.connection()

    def catch(conn: Connection, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.append((statement, params))

    event.listen(connection, "before_cursor_execute", catch)
    try:
        yield sent
    finally:
        event.remove(connection, "before_cursor_execute", catch)


def found_through_index(
    session: Session, statement: str, params: Any, table: str, column: str
) -> bool:
    """Whether the database can find the statement's rows of ``table`` through an index
    on ``column`` instead of reading the whole table.

    SQLite plans the same way whatever the rows: its plan must search ``table`` by an
    index. PostgreSQL's planner weighs its statistics (after other tests, it may prefer
    walking the primary key in the order asked): with sequential scans priced out, its
    plan must not read the table whole, and an index must lead with ``column``."""
    raw = session.connection().exec_driver_sql
    if session.get_bind().dialect.name == "sqlite":
        plan = [row[-1] for row in raw(f"EXPLAIN QUERY PLAN {statement}", params).all()]
        return any(step.startswith(f"SEARCH {table} USING") for step in plan) and not any(
            step.startswith(f"SCAN {table}") for step in plan
        )
    indexes = sa.inspect(session.connection()).get_indexes(table)
    if not any(i["column_names"][0] == column for i in indexes):
        return False
    raw("SET LOCAL enable_seqscan = off")
    (document,) = raw(f"EXPLAIN (FORMAT JSON) {statement}", params).one()
    scanned: set[str] = set()

    def walk(node: dict[str, Any]) -> None:
        if node.get("Node Type") == "Seq Scan":
            scanned.add(node["Relation Name"])
        for child in node.get("Plans", []):
            walk(child)

    walk((json.loads(document) if isinstance(document, str) else document)[0]["Plan"])
    return table not in scanned


READS: dict[str, tuple[Callable[[Session], object], str, str]] = {
    "backlog": (repo.unassigned_open_incidents, "incidents", "status"),
    "active assignments": (repo.every_active_assignment, "assignments", "is_active"),
}


@pytest.mark.parametrize("name", READS)
def test_a_tick_read_is_served_by_an_index(session: Session, name: str) -> None:
    read, table, column = READS[name]
    with sent_statements(session) as sent:
        read(session)
    statement, params = next((s, p) for s, p in sent if s.lstrip().upper().startswith("SELECT"))
    assert table in statement
    assert found_through_index(session, statement, params, table, column)


def test_the_indexed_reads_return_what_they_did(session: Session, clock: ManualClock) -> None:
    """The backlog is the open incidents without a crew; the active assignments are the
    active ones only, in id order, whatever else the tables hold."""
    now = clock.now()
    results = submit_many(
        session,
        [
            Submission(
                NewReport(
                    service_code="flooding",
                    lon=-73.80 + 0.01 * k,
                    lat=45.48,
                    channel=Channel.DISPATCHER,
                ),
                "test",
                now,
            )
            for k in range(5)
        ],
        context=IntakeContext.load(session),
    )
    incidents = [r.incident for r in results if not isinstance(r, FieldOpsError)]
    assert len(incidents) == 5
    crew_ids = session.scalars(sa.select(Crew.id).order_by(Crew.id).limit(4)).all()
    jobs = [pending_assignment(i.id, c, now) for i, c in zip(incidents, crew_ids, strict=False)]
    jobs[1].status, jobs[1].is_active = AssignmentStatus.DONE, False
    jobs[3].status = AssignmentStatus.EN_ROUTE
    jobs[2].status, jobs[2].is_active = AssignmentStatus.DECLINED, False
    for incident in incidents[:4]:
        incident.status = IncidentStatus.ASSIGNED
    incidents[1].status = IncidentStatus.RESOLVED  # its crew is done
    incidents[2].status = IncidentStatus.OPEN  # declined: back in the backlog
    session.add_all(jobs)
    give_ids(session, jobs)
    session.flush()

    assert [tuple(r) for r in repo.every_active_assignment(session)] == [
        (j.id, j.crew_id, j.status) for j in sorted(jobs, key=lambda j: j.id) if j.is_active
    ]
    assert {r.id for r in repo.unassigned_open_incidents(session)} == {
        incidents[2].id,
        incidents[4].id,
    }
