"""Queueing many notifications at once (what an escalation tick does), on both backends:
one message per recipient and event whether the duplicate is in the same batch, already
committed, or being written by another transaction at the same moment."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from fieldops.db.engine import unit_of_work
from fieldops.notifications.models import DeliveryStatus, Notification
from fieldops.notifications.service import Message, Outbox, enqueue, enqueue_many

PAYLOAD = {"incident_id": 7, "service_code": "flooding", "priority": 2}
DISPATCH_KEY = "escalation:7:dispatch:i:notify_supervisor:1"
ARRIVE_KEY = "escalation:7:arrive:i:notify_supervisor:1"
SUBJECT = "Incident 7 missed its dispatch deadline"


def message(recipient: str, dedupe_key: str = DISPATCH_KEY, subject: str = SUBJECT) -> Message:
    return Message(recipient=recipient, dedupe_key=dedupe_key, subject=subject, payload=PAYLOAD)


def stored(sessions: sessionmaker[Session]) -> list[tuple[str, str, str]]:
    with sessions() as session:
        rows = session.execute(
            sa.select(
                Notification.recipient, Notification.dedupe_key, Notification.subject
            ).order_by(Notification.id)
        ).all()
    return [(r.recipient, r.dedupe_key, r.subject) for r in rows]


def test_a_batch_queues_each_recipient_and_event_once(sessions, clock) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(sessions) as session:
        assert enqueue(
            session,
            Outbox(),
            recipient="supervisor:PRF",
            dedupe_key=DISPATCH_KEY,
            subject=SUBJECT,
            payload=PAYLOAD,
            now=clock.now(),
        )
    batch = [
        message("supervisor:PRF", subject="already queued by an earlier transaction"),
        message("supervisor:AHU"),
        message("supervisor:AHU", subject="the same event twice in one batch"),
        message("supervisor:PRF", ARRIVE_KEY),
    ]
    with unit_of_work(sessions) as session:
        assert enqueue_many(session, Outbox(), batch, now=clock.now()) == 2
    with unit_of_work(sessions) as session:  # a tick run again queues nothing more
        assert enqueue_many(session, Outbox(), batch, now=clock.now()) == 0
    assert stored(sessions) == [
        ("supervisor:PRF", DISPATCH_KEY, SUBJECT),
        ("supervisor:AHU", DISPATCH_KEY, SUBJECT),
        ("supervisor:PRF", ARRIVE_KEY, SUBJECT),
    ]
    with sessions() as session:
        rows = session.scalars(sa.select(Notification)).all()
    assert {(n.status, n.attempts, n.next_attempt_at, n.sent_at) for n in rows} == {
        (DeliveryStatus.PENDING, 0, clock.now(), None)
    }
    assert all(n.payload == PAYLOAD and n.exercise is False for n in rows)


def test_an_exercise_batch_is_marked_and_keeps_to_the_roster(
    session: Session, clock, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    drill = Outbox(exercise=True, roster=frozenset({"supervisor:PRF", "crew:12"}))
    batch = [
        message("supervisor:PRF"),
        message("supervisor:AHU"),
        message("crew:12", subject="[EXERCISE] Reminder: acknowledge incident 7"),
    ]
    with caplog.at_level(logging.WARNING, logger="fieldops.notifications"):
        assert enqueue_many(session, drill, batch, now=clock.now()) == 2
    assert "supervisor:AHU" in caplog.text and "not on the drill roster" in caplog.text
    rows = session.execute(
        sa.select(Notification.recipient, Notification.subject, Notification.exercise).order_by(
            Notification.id
        )
    ).all()
    assert [tuple(r) for r in rows] == [
        ("supervisor:PRF", "[EXERCISE] Incident 7 missed its dispatch deadline", True),
        ("crew:12", "[EXERCISE] Reminder: acknowledge incident 7", True),
    ]


def test_an_empty_batch_queues_nothing(session: Session, clock) -> None:  # type: ignore[no-untyped-def]
    assert enqueue_many(session, Outbox(), [], now=clock.now()) == 0
    dropped = Outbox(exercise=True, roster=frozenset())
    assert enqueue_many(session, dropped, [message("supervisor:PRF")], now=clock.now()) == 0
    assert session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0


def test_two_transactions_queueing_the_same_event_at_once_store_it_once(sessions, clock) -> None:  # type: ignore[no-untyped-def]
    results: dict[str, int] = {}
    failures: list[BaseException] = []

    def queue_in_own_transaction(now: datetime) -> None:
        try:
            with unit_of_work(sessions) as session:
                batch = [message("supervisor:AHU"), message("supervisor:VMA")]
                results["second"] = enqueue_many(session, Outbox(), batch, now=now)
        except BaseException as exc:  # reported by the test thread below
            failures.append(exc)

    with unit_of_work(sessions) as session:
        batch = [message("supervisor:PRF"), message("supervisor:AHU")]
        results["first"] = enqueue_many(session, Outbox(), batch, now=clock.now())
        second = threading.Thread(target=queue_in_own_transaction, args=(clock.now(),))
        second.start()
        # It cannot finish while this transaction holds the same (recipient, event) row
        # uncommitted (PostGIS waits on the unique key, SpatiaLite on the write lock); it
        # must wait, then skip that row rather than fail.
        second.join(timeout=0.5)
        assert second.is_alive()
    second.join(timeout=60)
    assert not failures, failures
    assert results == {"first": 2, "second": 1}
    assert [recipient for recipient, _, _ in stored(sessions)] == [
        "supervisor:PRF",
        "supervisor:AHU",
        "supervisor:VMA",
    ]
