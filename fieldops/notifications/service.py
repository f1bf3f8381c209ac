"""The outbox: queue a message once per recipient and event, deliver with retries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
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
    if outbox.exercise:
        if outbox.roster is not None and recipient not in outbox.roster:
            log.warning("exercise notification to %s dropped: not on the drill roster", recipient)
            return False
        subject = EXERCISE_PREFIX + subject.removeprefix(EXERCISE_PREFIX)
    exists = session.scalar(
        sa.select(Notification.id).where(
            Notification.recipient == recipient, Notification.dedupe_key == dedupe_key
        )
    )
    if exists is not None:
        return False
    session.add(
        Notification(
            recipient=recipient,
            dedupe_key=dedupe_key,
            subject=subject,
            payload=payload,
            exercise=outbox.exercise,
            status=DeliveryStatus.PENDING,
            attempts=0,
            created_at=now,
            next_attempt_at=now,
            sent_at=None,
            last_error="",
        )
    )
    session.flush()
    return True


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
