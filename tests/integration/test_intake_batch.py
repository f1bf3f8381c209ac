"""Intake in batches (``submit_many``) and the group-commit queue, on both backends: a batch
gives each report the outcome it would have had alone, in order, and the queue commits
every report it answers, exactly once, whatever else fails beside it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from fieldops.clock import ManualClock
from fieldops.db.ids import give_ids
from fieldops.errors import FieldOpsError, InvalidInput, OutsideServiceArea
from fieldops.escalation.models import EscalationStep
from fieldops.incidents.models import Channel, Incident, IncidentEvent, Report
from fieldops.intake.context import IntakeContext
from fieldops.intake.queue import IntakeQueue
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import IntakeOutcome, Submission, submit_many, submit_report

PLATEAU = (-73.5800, 45.5230)
OUTREMONT = (-73.6080, 45.5180)
LAVAL = (-73.7500, 45.6000)  # across the river: no district of the city


def east(at: tuple[float, float], metres: float) -> tuple[float, float]:
    return at[0] + metres / 78_200.0, at[1]


def new(service: str = "flooding", at: tuple[float, float] = PLATEAU, **extra: object) -> NewReport:
    return NewReport(
        service_code=service,
        lon=at[0],
        lat=at[1],
        channel=Channel.DISPATCHER,
        **extra,  # type: ignore[arg-type]
    )


def count(session: Session, model: type) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(model)) or 0


@pytest.fixture
def context(sessions: sessionmaker[Session]) -> IntakeContext:
    with sessions() as session:  # closed at once: SpatiaLite has one writer at a time
        return IntakeContext.load(session)


def test_a_batch_merges_a_report_into_an_incident_opened_earlier_in_the_same_batch(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    submissions = [
        Submission(new(at=PLATEAU), "test", clock.now()),
        Submission(new(at=OUTREMONT), "test", clock.now()),
        Submission(new(at=east(PLATEAU, 20)), "test", clock.now()),
        Submission(new("pothole", at=east(PLATEAU, 10)), "test", clock.now()),  # other group
    ]
    results = submit_many(session, submissions, context=context)
    session.commit()

    assert all(isinstance(r, IntakeOutcome) for r in results)
    first, other, joined, pothole = (r for r in results if isinstance(r, IntakeOutcome))
    assert (first.merged, other.merged, joined.merged, pothole.merged) == (
        False,
        False,
        True,
        False,
    )
    assert joined.incident.id == first.incident.id
    assert len({first.incident.id, other.incident.id, pothole.incident.id}) == 3
    stored = session.get(Incident, first.incident.id)
    assert stored is not None and stored.report_count == 2
    assert count(session, Report) == 4 and count(session, Incident) == 3
    kinds = sorted(session.scalars(sa.select(IncidentEvent.kind)))
    assert kinds == ["opened", "opened", "opened", "report_merged"]
    # Every opened incident got its ladder, as it would have one at a time.
    planned = session.scalars(sa.select(EscalationStep.incident_id).distinct()).all()
    assert set(planned) == {first.incident.id, other.incident.id, pothole.incident.id}


def test_a_batch_gives_the_same_incidents_as_one_report_at_a_time(
    sessions: sessionmaker[Session], context: IntakeContext, clock: ManualClock
) -> None:
    places = [east(PLATEAU, 37 * i) for i in range(12)] + [
        east(OUTREMONT, 45 * i) for i in range(6)
    ]
    with sessions() as session:
        batch = submit_many(
            session, [Submission(new(at=p), "test", clock.now()) for p in places], context=context
        )
        together = [r.incident.id for r in batch if isinstance(r, IntakeOutcome)]
        session.rollback()
    with sessions() as session:
        alone = [
            submit_report(
                session, new(at=p), context=context, actor="t", now=clock.now()
            ).incident.id
            for p in places
        ]
        session.rollback()

    def shape(ids: list[int]) -> list[int]:  # which earlier report each one joined
        return [ids.index(i) for i in ids]

    assert len(together) == len(places)
    assert shape(together) == shape(alone)


def test_a_bad_report_gets_its_error_and_the_rest_of_the_batch_goes_in(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    results = submit_many(
        session,
        [
            Submission(new(at=PLATEAU), "test", clock.now()),
            Submission(new(at=LAVAL), "test", clock.now()),
            Submission(new("no_such_service"), "test", clock.now()),
            Submission(new(at=OUTREMONT, description="x" * 4001), "test", clock.now()),
            Submission(new(at=OUTREMONT), "test", clock.now()),
        ],
        context=context,
    )
    session.commit()
    assert isinstance(results[0], IntakeOutcome) and isinstance(results[4], IntakeOutcome)
    assert isinstance(results[1], OutsideServiceArea)
    assert isinstance(results[2], InvalidInput) and "service_code" in str(results[2])
    assert isinstance(results[3], InvalidInput) and "description" in str(results[3])
    assert count(session, Report) == 2


def test_a_source_ref_sent_twice_in_one_batch_is_stored_once(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    twice = new(source_ref="row-17")
    results = submit_many(
        session,
        [Submission(twice, "t", clock.now()), Submission(twice, "t", clock.now())],
        context=context,
    )
    session.commit()
    first, second = results
    assert isinstance(first, IntakeOutcome) and isinstance(second, IntakeOutcome)
    assert (first.created, second.created) == (True, False)
    assert first.report.id == second.report.id
    assert count(session, Report) == 1


def run_threads(n: int, work: Callable[[int], None]) -> None:
    start = threading.Barrier(n)

    def run(i: int) -> None:
        start.wait()
        work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)


def test_the_queue_commits_every_report_it_answers_in_fewer_transactions(
    sessions: sessionmaker[Session], context: IntakeContext, clock: ManualClock
) -> None:
    queue = IntakeQueue(sessions, lambda: context)
    outcomes: dict[int, IntakeOutcome] = {}
    # Half the reports at one spot: whichever goes first opens, the others must join it.
    spots = [PLATEAU if i % 2 else east(OUTREMONT, 300 * (i // 2)) for i in range(24)]

    def work(i: int) -> None:
        outcomes[i] = queue.submit(Submission(new(at=spots[i]), f"t{i}", clock.now()))

    run_threads(24, work)

    assert len(outcomes) == 24
    assert queue.batches < 24  # some reports shared a transaction
    with sessions() as session:
        stored = {
            r.id: r.incident_id for r in session.execute(sa.select(Report.id, Report.incident_id))
        }
        assert stored == {o.report.id: o.incident.id for o in outcomes.values()}
        at_plateau = {o.incident.id for i, o in outcomes.items() if i % 2}
        assert len(at_plateau) == 1
        incident = session.get(Incident, at_plateau.pop())
        assert incident is not None and incident.report_count == 12


def test_a_report_the_database_refuses_fails_alone_and_the_others_are_kept(
    sessions: sessionmaker[Session], context: IntakeContext, clock: ManualClock
) -> None:
    queue = IntakeQueue(sessions, lambda: context)
    errors: dict[int, BaseException] = {}
    outcomes: dict[int, IntakeOutcome] = {}

    def work(i: int) -> None:
        # Report 3 names a key that does not exist: a foreign key the database refuses,
        # which sinks the batch it is in; the queue then retries each report alone.
        key_id = 999_999 if i == 3 else None
        try:
            outcomes[i] = queue.submit(
                Submission(new(at=east(OUTREMONT, 400 * i)), "t", clock.now(), key_id)
            )
        except (FieldOpsError, sa.exc.DBAPIError) as error:
            errors[i] = error

    run_threads(8, work)

    assert set(errors) == {3}
    assert set(outcomes) == set(range(8)) - {3}
    with sessions() as session:
        assert count(session, Report) == 7
        assert set(session.scalars(sa.select(Report.id))) == {
            o.report.id for o in outcomes.values()
        }


def test_a_batch_leaves_the_callers_own_pending_rows_as_a_flush_would(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    # Something the caller added before taking reports in, in the same transaction.
    (opened,) = submit_many(session, [Submission(new(), "test", clock.now())], context=context)
    assert isinstance(opened, IntakeOutcome)
    note = IncidentEvent(
        incident_id=opened.incident.id, at=clock.now(), actor="test", kind="status_note"
    )
    session.add(note)
    submit_many(session, [Submission(new(at=OUTREMONT), "test", clock.now())], context=context)
    # Still the caller's object, stored and tracked: a later change of it is written.
    assert note in session and sa.inspect(note).persistent
    note.data = {"note": "checked"}
    session.commit()
    stored = session.scalars(
        sa.select(IncidentEvent.data).where(IncidentEvent.kind == "status_note")
    ).all()
    assert stored == [{"note": "checked"}]


def test_the_log_of_a_batch_is_in_the_reports_order(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    # The change feed reads events by id: a batch's events come in the order of its reports.
    submissions = [
        Submission(new(at=PLATEAU), "test", clock.now()),
        Submission(new(at=OUTREMONT), "test", clock.now()),
        Submission(new(at=east(PLATEAU, 15)), "test", clock.now()),
        Submission(new("pothole", at=east(OUTREMONT, 5)), "test", clock.now()),
    ]
    results = [r for r in submit_many(session, submissions, context=context)]
    assert all(isinstance(r, IntakeOutcome) for r in results)
    session.commit()
    log = session.execute(
        sa.select(IncidentEvent.incident_id, IncidentEvent.kind).order_by(IncidentEvent.id)
    ).all()
    first, other, joined, pothole = (r.incident.id for r in results if isinstance(r, IntakeOutcome))
    assert [tuple(row) for row in log] == [
        (first, "opened"),
        (other, "opened"),
        (joined, "report_merged"),
        (pothole, "opened"),
    ]


def test_a_batch_in_a_rolled_back_savepoint_leaves_nothing(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    savepoint = session.begin_nested()
    (outcome,) = submit_many(session, [Submission(new(), "test", clock.now())], context=context)
    assert isinstance(outcome, IntakeOutcome)
    savepoint.rollback()
    assert outcome.incident not in session and outcome.report not in session
    # Taken in again after it, as if the first had never been.
    (again,) = submit_many(session, [Submission(new(), "test", clock.now())], context=context)
    assert isinstance(again, IntakeOutcome) and not again.merged
    session.commit()
    assert count(session, Incident) == 1 and count(session, Report) == 1
    assert session.scalars(sa.select(IncidentEvent.kind)).all() == ["opened"]


def test_the_callers_rows_with_and_without_ids_all_get_theirs(
    session: Session, context: IntakeContext, clock: ManualClock
) -> None:
    (opened,) = submit_many(session, [Submission(new(), "test", clock.now())], context=context)
    assert isinstance(opened, IntakeOutcome)
    notes = [
        IncidentEvent(incident_id=opened.incident.id, at=clock.now(), actor="test", kind=kind)
        for kind in ("note_a", "note_b")
    ]
    session.add(notes[0])
    session.add(notes[1])
    give_ids(session, [notes[1]])  # one numbered by the caller, one not
    submit_many(session, [Submission(new(at=OUTREMONT), "test", clock.now())], context=context)
    session.commit()
    assert len({n.id for n in notes}) == 2
    assert count(session, IncidentEvent) == 4


def test_an_idle_writer_has_given_its_connection_back_before_answering(
    engine: sa.Engine, sessions: sessionmaker[Session], context: IntakeContext, clock: ManualClock
) -> None:
    # A sender that shuts the app down once answered (disposing of the pool) must find no
    # connection still out: one returned to a disposed pool is left for the collector.
    def slow_checkin(*_: object) -> None:
        time.sleep(0.05)  # a return to the pool that takes its time

    queue = IntakeQueue(sessions, lambda: context)
    sa.event.listen(engine, "checkin", slow_checkin)
    try:
        for at in (PLATEAU, OUTREMONT, east(OUTREMONT, 400)):
            queue.submit(Submission(new(at=at), "test", clock.now()))
            assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        sa.event.remove(engine, "checkin", slow_checkin)
