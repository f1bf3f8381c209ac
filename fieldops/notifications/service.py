"""The outbox: queue a message once per recipient and event, deliver with retries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from fieldops.notifications.models import DeliveryStatus, Notification

log = logging.getLogger("fieldops.notifications")

EXERCISE_PREFIX = "[EXERCISE] "
MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(seconds=5)
LONGEST_RETRY = timedelta(minutes=10)
# How long a message taken for sending stays off the queue (longer than any send takes).
LEASE = timedelta(minutes=2)


@dataclass(frozen=True)
class Outbox:
    """Where notifications go. In an exercise every subject carries [EXERCISE] and only
    the drill roster may receive: anyone else is dropped (and logged), never sent."""

    exercise: bool = False
    roster: frozenset[str] | None = None  # None: anyone


@dataclass(frozen=True)
class Message:
    """One message to queue: to whom, for which event, and what it says."""

    recipient: str
    dedupe_key: str
    subject: str
    payload: dict[str, Any]


def enqueue(
    session: Session,
    outbox: Outbox,
    *,
    recipient: str,
    dedupe_key: str,
    subject: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Queue one message; False when this recipient already has this event (or may not
    receive it in an exercise)."""
    message = Message(recipient, dedupe_key, subject, payload)
    return enqueue_many(session, outbox, [message], now=now) == 1


def enqueue_many(
    session: Session, outbox: Outbox, messages: Sequence[Message], *, now: datetime
) -> int:
    """Queue many messages with one statement; returns how many were new.

    Each recipient gets each event once: a message whose (recipient, dedupe_key) is
    already queued, by an earlier transaction, a concurrent one or earlier in
    ``messages``, is left out by the database itself (ON CONFLICT DO NOTHING on the
    unique key), so a retried or racing caller never queues it twice and never fails.
    """
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for message in messages:
        subject = message.subject
        if outbox.exercise:
            if outbox.roster is not None and message.recipient not in outbox.roster:
                log.warning(
                    "exercise notification to %s dropped: not on the drill roster",
                    message.recipient,
                )
                continue
            subject = EXERCISE_PREFIX + subject.removeprefix(EXERCISE_PREFIX)
        if (message.recipient, message.dedupe_key) in seen:
            continue
        seen.add((message.recipient, message.dedupe_key))
        rows.append(
            {
                "recipient": message.recipient,
                "dedupe_key": message.dedupe_key,
                "subject": subject,
                "payload": message.payload,
                "exercise": outbox.exercise,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "next_attempt_at": now,
                "sent_at": None,
                "last_error": "",
            }
        )
    if not rows:
        return 0
    # One executemany: psycopg pipelines the rows and SQLite runs them in-process, both
    # far faster than a multi-row VALUES of thousands of parameters, which psycopg is slow
    # to convert. Both drivers sum the rows inserted (skipped duplicates count 0).
    statement = _insert_new_only(session.get_bind().dialect.name)
    done = session.execute(statement.execution_options(preserve_rowcount=True), rows)
    return cast(sa.CursorResult[Any], done).rowcount


def _insert_new_only(dialect: str) -> postgresql.Insert | sqlite.Insert:
    """INSERT into the outbox that skips rows whose (recipient, dedupe_key) exists."""
    table = cast(sa.Table, Notification.__table__)
    unique = ["recipient", "dedupe_key"]
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=unique)
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=unique)


class Sender(Protocol):
    def send(self, notification: Notification) -> None:
        """Deliver or raise."""
        ...


class LogSender:
    """Writes each notification to the log: the default where no webhook is set."""

    def send(self, notification: Notification) -> None:
        log.info("notify %s: %s", notification.recipient, notification.subject)


def retry_delay(attempts: int) -> timedelta:
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), LONGEST_RETRY)


def deliver_due(
    session: Session, sender: Sender, *, now: datetime, limit: int = 100
) -> tuple[int, int]:
    """Send what is due; (sent, failed attempts). Failures are retried with back-off and
    given up after MAX_ATTEMPTS; nothing is lost on the way.

    Unlike other services this commits once, on purpose: the due messages are leased
    (their next attempt pushed past LEASE) and committed before any sender talks to the
    network, so no database lock is held while a slow receiver answers. If the process
    dies mid-send, a leased message is simply tried again when its lease runs out.
    """
    statement = (
        sa.select(Notification)
        .where(Notification.status == DeliveryStatus.PENDING, Notification.next_attempt_at <= now)
        .order_by(Notification.next_attempt_at, Notification.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update(skip_locked=True)
    leased = list(session.scalars(statement).all())
    for notification in leased:
        notification.attempts += 1
        notification.next_attempt_at = now + LEASE
    session.commit()

    sent = failed = 0
    for notification in leased:
        try:
            sender.send(notification)
        except Exception as exc:  # a sender failing must not stop the others
            failed += 1
            notification.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if notification.attempts >= MAX_ATTEMPTS:
                notification.status = DeliveryStatus.FAILED
            else:
                notification.next_attempt_at = now + retry_delay(notification.attempts)
        else:
            sent += 1
            notification.status = DeliveryStatus.SENT
            notification.sent_at = now
    session.flush()
    return sent, failed


def pending(session: Session) -> Sequence[Notification]:
    return session.scalars(
        sa.select(Notification).where(Notification.status == DeliveryStatus.PENDING)
    ).all()
