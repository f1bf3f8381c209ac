"""The notification outbox on both backends: de-duplication, exercise outboxes, retries with
back-off, and the signed webhook against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from fieldops.db.engine import unit_of_work
from fieldops.notifications.models import DeliveryStatus, Notification
from fieldops.notifications.service import (
    EXERCISE_PREFIX,
    MAX_ATTEMPTS,
    Outbox,
    deliver_due,
    enqueue,
    retry_delay,
)
from fieldops.notifications.webhook import SIGNATURE_HEADER, WebhookSender, sign
from fieldops.scheduler import Jobs

SECRET = "s3cret-shared-with-the-receiver"
PAYLOAD = {"incident_id": 7, "service_code": "flooding", "priority": 2, "lon": -73.857}
DISPATCH_KEY = "escalation:7:dispatch:i:notify_supervisor:1"
ARRIVE_KEY = "escalation:7:arrive:i:notify_supervisor:1"
SUBJECT = "Incident 7 missed its dispatch deadline"


def queue(
    session: Session,
    now: datetime,
    *,
    recipient: str = "supervisor:PRF",
    dedupe_key: str = DISPATCH_KEY,
    subject: str = SUBJECT,
    outbox: Outbox | None = None,
) -> bool:
    return enqueue(
        session,
        outbox or Outbox(),
        recipient=recipient,
        dedupe_key=dedupe_key,
        subject=subject,
        payload=PAYLOAD,
        now=now,
    )


def stored(sessions: sessionmaker[Session]) -> list[Notification]:
    """Every notification as committed, read in a fresh session."""
    with sessions() as session:
        return list(session.scalars(sa.select(Notification).order_by(Notification.id)))


class Flaky:
    """A sender that fails its first ``failures`` calls, then delivers; it keeps the order
    of what it was asked to send."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[str] = []

    def send(self, notification: Notification) -> None:
        self.calls.append(notification.recipient)
        if len(self.calls) <= self.failures:
            raise ConnectionError(f"receiver down (call {len(self.calls)})")


# --- enqueue -------------------------------------------------------------------------------


def test_enqueue_keeps_one_message_per_recipient_and_event(session: Session, clock) -> None:  # type: ignore[no-untyped-def]
    now = clock.now()
    assert queue(session, now) is True
    assert queue(session, now, subject="the same event, reworded") is False
    assert queue(session, now, recipient="supervisor:AHU") is True  # same event, someone else
    assert queue(session, now, dedupe_key=ARRIVE_KEY) is True
    rows = session.execute(
        sa.select(Notification.recipient, Notification.dedupe_key, Notification.subject).order_by(
            Notification.id
        )
    ).all()
    assert [tuple(r) for r in rows] == [
        ("supervisor:PRF", DISPATCH_KEY, SUBJECT),
        ("supervisor:AHU", DISPATCH_KEY, SUBJECT),
        ("supervisor:PRF", ARRIVE_KEY, SUBJECT),
    ]
    first = session.scalars(sa.select(Notification).order_by(Notification.id)).first()
    assert first is not None
    assert (first.status, first.attempts, first.next_attempt_at, first.sent_at) == (
        DeliveryStatus.PENDING,
        0,
        now,
        None,
    )
    assert first.exercise is False


def test_enqueue_deduplicates_across_committed_transactions(sessions, clock) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(sessions) as session:
        assert queue(session, clock.now()) is True
    clock.advance(timedelta(minutes=3))
    with unit_of_work(sessions) as session:
        assert queue(session, clock.now()) is False
    assert len(stored(sessions)) == 1


def test_exercise_outbox_marks_every_subject_once_and_keeps_to_its_roster(
    session: Session, clock, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    drill = Outbox(exercise=True, roster=frozenset({"supervisor:PRF", "crew:12"}))
    now = clock.now()
    assert queue(session, now, outbox=drill, subject="Flood at the viaduct") is True
    assert (
        queue(
            session,
            now,
            outbox=drill,
            recipient="crew:12",
            subject="[EXERCISE] Reminder: acknowledge incident 7",
        )
        is True
    )
    with caplog.at_level(logging.WARNING, logger="fieldops.notifications"):
        assert queue(session, now, outbox=drill, recipient="supervisor:AHU") is False
        assert queue(session, now, outbox=drill, recipient="mayor", dedupe_key="other") is False
    assert "supervisor:AHU" in caplog.text and "not on the drill roster" in caplog.text
    rows = session.execute(
        sa.select(Notification.recipient, Notification.subject, Notification.exercise).order_by(
            Notification.id
        )
    ).all()
    assert [tuple(r) for r in rows] == [
        ("supervisor:PRF", "[EXERCISE] Flood at the viaduct", True),
        ("crew:12", "[EXERCISE] Reminder: acknowledge incident 7", True),
    ]
    # Nothing at all is stored for anyone off the roster.
    off_roster = session.scalar(
        sa.select(sa.func.count())
        .select_from(Notification)
        .where(Notification.recipient.in_(["supervisor:AHU", "mayor"]))
    )
    assert off_roster == 0
    # A live outbox neither marks the subject nor limits recipients.
    assert queue(session, now, recipient="supervisor:AHU", dedupe_key="live") is True
    live = session.scalars(sa.select(Notification).where(Notification.dedupe_key == "live")).one()
    assert (live.subject, live.exercise) == ("Incident 7 missed its dispatch deadline", False)
    assert not live.subject.startswith(EXERCISE_PREFIX)


def test_an_exercise_without_a_roster_reaches_anyone_but_is_still_marked(
    session: Session, clock
) -> None:  # type: ignore[no-untyped-def]
    assert queue(session, clock.now(), outbox=Outbox(exercise=True), recipient="anyone") is True
    subject = session.scalars(sa.select(Notification.subject)).one()
    assert subject == "[EXERCISE] Incident 7 missed its dispatch deadline"


# --- delivery and retries --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempts", "delay_s"),
    [(1, 5), (2, 10), (3, 20), (4, 40), (5, 80), (6, 160), (7, 320), (8, 600), (9, 600), (30, 600)],
)
def test_retry_delay_doubles_from_five_seconds_up_to_ten_minutes(
    attempts: int, delay_s: int
) -> None:
    assert retry_delay(attempts) == timedelta(seconds=delay_s)


def test_a_failing_sender_is_retried_with_back_off_then_given_up(sessions, clock) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(sessions) as session:
        queue(session, clock.now())
    sender = Flaky(failures=MAX_ATTEMPTS)
    expected_waits = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with unit_of_work(sessions) as session:
            assert deliver_due(session, sender, now=clock.now()) == (0, 1)
        [row] = stored(sessions)
        assert row.attempts == attempt
        assert row.last_error == f"ConnectionError: receiver down (call {attempt})"
        assert row.sent_at is None
        if attempt < MAX_ATTEMPTS:
            assert row.status == DeliveryStatus.PENDING
            wait = row.next_attempt_at - clock.now()
            assert wait == retry_delay(attempt)
            expected_waits.append(wait)
            # Not due a moment before its next attempt: nothing is sent.
            clock.advance(wait - timedelta(milliseconds=1))
            with unit_of_work(sessions) as session:
                assert deliver_due(session, sender, now=clock.now()) == (0, 0)
            clock.advance(timedelta(milliseconds=1))
    assert expected_waits == [timedelta(seconds=s) for s in (5, 10, 20, 40, 80, 160, 320)]
    [row] = stored(sessions)
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, MAX_ATTEMPTS)
    assert len(sender.calls) == MAX_ATTEMPTS
    # Given up: never tried again, however long we wait.
    clock.advance(timedelta(days=1))
    with unit_of_work(sessions) as session:
        assert deliver_due(session, sender, now=clock.now()) == (0, 0)
    assert len(sender.calls) == MAX_ATTEMPTS


def test_a_later_success_marks_the_message_sent_once(sessions, clock) -> None:  # type: ignore[no-untyped-def]
    queued_at = clock.now()
    with unit_of_work(sessions) as session:
        queue(session, queued_at)
    sender = Flaky(failures=2)
    for _ in range(2):
        with unit_of_work(sessions) as session:
            assert deliver_due(session, sender, now=clock.now()) == (0, 1)
        clock.set(stored(sessions)[0].next_attempt_at)
    with unit_of_work(sessions) as session:
        assert deliver_due(session, sender, now=clock.now()) == (1, 0)
    [row] = stored(sessions)
    assert (row.status, row.attempts, row.sent_at) == (DeliveryStatus.SENT, 3, clock.now())
    assert row.sent_at == queued_at + timedelta(seconds=15)  # 5 s, then 10 s of back-off
    clock.advance(timedelta(hours=1))
    with unit_of_work(sessions) as session:
        assert deliver_due(session, sender, now=clock.now()) == (0, 0)
    assert len(sender.calls) == 3


@dataclass
class FailsFor:
    """Fails for some recipients only, records every call."""

    bad: set[str]
    calls: list[str] = field(default_factory=list)

    def send(self, notification: Notification) -> None:
        self.calls.append(notification.recipient)
        if notification.recipient in self.bad:
            raise RuntimeError(f"no route to {notification.recipient}")


def test_one_failure_does_not_stop_the_other_deliveries(sessions, clock) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(sessions) as session:
        for n, recipient in enumerate(["supervisor:PRF", "supervisor:AHU", "crew:3"]):
            queue(session, clock.now() + timedelta(seconds=n), recipient=recipient)
    clock.advance(timedelta(seconds=5))
    sender = FailsFor(bad={"supervisor:AHU"})
    with unit_of_work(sessions) as session:
        assert deliver_due(session, sender, now=clock.now()) == (2, 1)
    assert sender.calls == ["supervisor:PRF", "supervisor:AHU", "crew:3"]  # oldest first
    status = {n.recipient: (n.status, n.attempts) for n in stored(sessions)}
    assert status == {
        "supervisor:PRF": (DeliveryStatus.SENT, 1),
        "supervisor:AHU": (DeliveryStatus.PENDING, 1),
        "crew:3": (DeliveryStatus.SENT, 1),
    }


def test_the_scheduled_job_commits_what_it_delivered(sessions, clock) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(sessions) as session:
        queue(session, clock.now())
        queue(session, clock.now(), recipient="supervisor:AHU")
    sender = FailsFor(bad={"supervisor:AHU"})
    jobs = Jobs(
        sessions=sessions,
        clock=clock,
        travel=lambda: pytest.fail("delivering needs no travel model"),
        stale_after=timedelta(minutes=5),
        sender=sender,
    )
    assert jobs.deliver_notifications() == (1, 1)
    assert jobs.deliver_notifications() == (0, 0)  # the retry is 5 s away
    clock.advance(timedelta(seconds=5))
    sender.bad.clear()
    assert jobs.deliver_notifications() == (1, 0)
    assert {n.recipient: n.status for n in stored(sessions)} == {
        "supervisor:PRF": DeliveryStatus.SENT,
        "supervisor:AHU": DeliveryStatus.SENT,
    }


# --- the webhook, against a real HTTP server -------------------------------------------------


@dataclass
class Receiver:
    """What a webhook receiver on 127.0.0.1 got, and the statuses it answers with in turn
    (200 once the list is used up)."""

    url: str
    answers: list[int]
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    # How long each answer takes (a slow or overloaded receiver), and a flag raised as soon
    # as a request has come in.
    delay_s: float = 0.0
    arrived: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="", answers=[])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name for the POST handler
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.received.append((self.path, dict(self.headers.items()), body))
            state.arrived.set()
            time.sleep(state.delay_s)
            status = state.answers.pop(0) if state.answers else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep the test output quiet

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: a free port
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/fieldops"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def webhook(receiver: Receiver) -> Iterator[WebhookSender]:
    sender = WebhookSender(receiver.url, SECRET, timeout_s=5.0)
    yield sender
    # WebhookSender has no close(); its connection pool would otherwise outlive the test.
    sender._client.close()


def test_webhook_posts_the_message_signed_with_the_shared_secret(
    sessions, clock, receiver: Receiver, webhook: WebhookSender
) -> None:  # type: ignore[no-untyped-def]
    with unit_of_work(sessions) as session:
        queue(session, clock.now(), outbox=Outbox(exercise=True))
    with unit_of_work(sessions) as session:
        assert deliver_due(session, webhook, now=clock.now()) == (1, 0)
    [(path, headers, body)] = receiver.received
    assert path == "/hooks/fieldops"
    message = json.loads(body)
    assert message["recipient"] == "supervisor:PRF"
    assert message["subject"] == "[EXERCISE] Incident 7 missed its dispatch deadline"
    assert message["payload"] == PAYLOAD
    assert message["exercise"] is True
    assert message["id"] == stored(sessions)[0].id
    assert headers["Content-Type"] == "application/json"
    signature = headers[SIGNATURE_HEADER]
    assert signature == sign(SECRET, body)
    # What a receiver does: recompute the HMAC of the raw body and compare in constant time.
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature, expected)
    forged = "sha256=" + hmac.new(b"not-the-secret", body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(signature, forged)
    tampered = body.replace(b"supervisor:PRF", b"supervisor:XXX")
    assert not hmac.compare_digest(signature, sign(SECRET, tampered))
    [row] = stored(sessions)
    assert (row.status, row.attempts, row.sent_at) == (DeliveryStatus.SENT, 1, clock.now())


def test_webhook_server_error_counts_as_a_failure_and_is_retried(
    sessions, clock, receiver: Receiver, webhook: WebhookSender
) -> None:  # type: ignore[no-untyped-def]
    receiver.answers = [500]
    with unit_of_work(sessions) as session:
        queue(session, clock.now())
    with unit_of_work(sessions) as session:
        assert deliver_due(session, webhook, now=clock.now()) == (0, 1)
    [row] = stored(sessions)
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
    assert row.next_attempt_at == clock.now() + timedelta(seconds=5)
    assert "500" in row.last_error
    clock.advance(timedelta(seconds=5))
    with unit_of_work(sessions) as session:
        assert deliver_due(session, webhook, now=clock.now()) == (1, 0)
    [row] = stored(sessions)
    assert (row.status, row.attempts, row.sent_at) == (DeliveryStatus.SENT, 2, clock.now())
    assert len(receiver.received) == 2
    first, second = (body for _, _, body in receiver.received)
    assert first == second  # the retry is the same message, signed the same way
    assert all(h[SIGNATURE_HEADER] == sign(SECRET, b) for _, h, b in receiver.received)


def test_a_slow_receiver_does_not_hold_up_other_writers(
    request: pytest.FixtureRequest, engine, sessions, clock, receiver: Receiver, webhook
) -> None:  # type: ignore[no-untyped-def]
    receiver.delay_s = 0.75
    with unit_of_work(sessions) as session:
        queue(session, clock.now())
        queue(session, clock.now(), recipient="supervisor:AHU")

    def deliver() -> None:
        with unit_of_work(sessions) as session:
            deliver_due(session, webhook, now=clock.now())

    delivering = threading.Thread(target=deliver)
    delivering.start()
    try:
        assert receiver.arrived.wait(timeout=5), "the webhook was never called"
        started = time.perf_counter()
        with unit_of_work(sessions) as session:  # any other writer: here, the outbox itself
            queue(session, clock.now(), recipient="crew:3", dedupe_key="unrelated")
        waited_s = time.perf_counter() - started
    finally:
        delivering.join(timeout=30)
    assert waited_s < 0.5, f"a writer waited {waited_s:.2f} s behind webhook calls"
    assert {n.recipient: n.status for n in stored(sessions)} == {
        "supervisor:PRF": DeliveryStatus.SENT,
        "supervisor:AHU": DeliveryStatus.SENT,
        "crew:3": DeliveryStatus.PENDING,
    }


@pytest.mark.parametrize("secret", ["", None])
def test_webhook_refuses_to_run_without_a_secret(secret: str | None) -> None:
    with pytest.raises(ValueError, match="needs a shared secret"):
        WebhookSender("http://127.0.0.1:9/hook", secret)  # type: ignore[arg-type]
