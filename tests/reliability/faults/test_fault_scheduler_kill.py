"""kill -9 `fieldops scheduler run` in the middle of sending notifications, while overdue
incidents keep coming in, then start it again: every due escalation step fires exactly
once (one row, one 'escalated' event, one notification per recipient), and the outbox
delivers everything it owed to a webhook receiver on 127.0.0.1 (the message in flight
at the kill at least once, every other exactly once)."""

from __future__ import annotations

import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from fault_checks import audit, half_written, unclear_failures
from fault_procs import BACKENDS, FaultDb, start_api, start_scheduler, wait_for, webhook_receiver
from fault_traffic import Calls, Traffic, make_keys

from fieldops.clock import SystemClock
from fieldops.db.engine import make_engine
from fieldops.escalation.models import EscalationStep, StepStatus
from fieldops.incidents.models import IncidentEvent
from fieldops.notifications.models import DeliveryStatus, Notification

MIX = {"incident": 0.5, "open311": 0.25, "read": 0.25}
# Share of dispatcher reports made as life-safety calls 35 minutes ago: their dispatch,
# arrive and mutual-aid steps are due as soon as they open, all through the run.
OVERDUE = 0.1


def _scalar(url: str, statement: sa.Select[int]) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(statement) or 0)
    finally:
        engine.dispose()


def _fired(url: str) -> int:
    return _scalar(
        url,
        sa.select(sa.func.count())
        .select_from(EscalationStep)
        .where(EscalationStep.status == StepStatus.FIRED),
    )


def _owed_steps(url: str, due_by: datetime) -> int:
    """Steps due by ``due_by`` that no scheduler has settled yet."""
    return _scalar(
        url,
        sa.select(sa.func.count())
        .select_from(EscalationStep)
        .where(EscalationStep.status == StepStatus.PLANNED, EscalationStep.due_at <= due_by),
    )


def _unsent(url: str) -> int:
    return _scalar(
        url,
        sa.select(sa.func.count())
        .select_from(Notification)
        .where(Notification.status != DeliveryStatus.SENT),
    )


def _leased(url: str) -> list[int]:
    """Messages taken for sending and not yet marked sent: after a kill, those the dead
    scheduler held."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [
                int(i)
                for i in conn.scalars(
                    sa.select(Notification.id).where(
                        Notification.status == DeliveryStatus.PENDING,
                        Notification.attempts > 0,
                        Notification.next_attempt_at > SystemClock().now(),
                    )
                )
            ]
    finally:
        engine.dispose()


def _end_leases(url: str, ids: list[int]) -> None:
    """A leased message is sent again when its lease (minutes) runs out; end the dead
    scheduler's leases now rather than wait for them."""
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.update(Notification)
                .where(Notification.id.in_(ids))
                .values(next_attempt_at=SystemClock().now())
            )
    finally:
        engine.dispose()


@pytest.mark.parametrize("fault_db", BACKENDS, indirect=True)
def test_killed_scheduler_fires_each_due_step_once_and_delivers_what_it_owed(
    fault_db: FaultDb, city_points: list[tuple[float, float]], tmp_path: Path
) -> None:
    url = fault_db.url
    keys = make_keys(url)
    with webhook_receiver(delay_s=0.005) as receiver:
        api = start_api(url, workers=1, log_dir=tmp_path)
        schedulers = [start_scheduler(url, log_dir=tmp_path, webhook_url=receiver.url, name="s1")]
        try:
            calls = Calls(keys, city_points, MIX, seed=2, overdue=OVERDUE)
            with Traffic(api.port, calls, connections=4) as traffic:
                wait_for("the scheduler to fire a step", lambda: _fired(url) > 0, 60, 0.2)
                # Kill it while it waits on the receiver: messages leased, one sent.
                receiver.hold_next()
                wait_for("a delivery to hold", receiver.holding.is_set, 30, 0.05)
                schedulers[0].kill()
                receiver.released.set()
                fired_before = _fired(url)
                leased = _leased(url)
                time.sleep(1.5)  # overdue incidents keep coming, nothing fires them
                owed_at_restart = _owed_steps(url, SystemClock().now())
                schedulers.append(
                    start_scheduler(url, log_dir=tmp_path, webhook_url=receiver.url, name="s2")
                )
                time.sleep(1.0)
            stopped_at = SystemClock().now()
            wait_for(
                "the restarted scheduler to catch up",
                lambda: _owed_steps(url, stopped_at) == 0,
                60,
                0.3,
            )
            _end_leases(url, leased)
            wait_for("the outbox to deliver", lambda: _unsent(url) == 0, 60, 0.3)
            assert schedulers[1].alive(), schedulers[1].tail()
        finally:
            for scheduler in schedulers:
                scheduler.stop(signal.SIGINT)
            api.stop()
        deliveries = list(receiver.deliveries)

    assert fired_before > 0 and owed_at_restart > 0 and leased, (fired_before, owed_at_restart)
    assert unclear_failures(traffic) == []
    ledger = audit(url, traffic.exchanges)
    assert ledger.problems == [] and ledger.unacknowledged == 0
    assert half_written(url) == {}

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            steps = conn.execute(
                sa.select(EscalationStep.incident_id, EscalationStep.key, EscalationStep.status)
            ).all()
            escalated = conn.execute(
                sa.select(IncidentEvent.incident_id, IncidentEvent.data).where(
                    IncidentEvent.kind == "escalated"
                )
            ).all()
            notifications = conn.execute(
                sa.select(Notification.id, Notification.recipient, Notification.dedupe_key)
            ).all()
    finally:
        engine.dispose()

    # Each step of each incident exists once, and each fired one acted once.
    assert not [k for k, n in Counter((i, key) for i, key, _s in steps).items() if n > 1]
    fired = {(i, key) for i, key, status in steps if status == StepStatus.FIRED}
    acted = Counter((i, data["step"]) for i, data in escalated)
    assert len(fired) >= fired_before + owed_at_restart
    assert acted == Counter(dict.fromkeys(fired, 1))
    # One message per recipient and event; every one delivered, signed, and no message
    # twice except those the killed scheduler had in hand (sent, not yet marked).
    assert not [k for k, n in Counter((r, d) for _i, r, d in notifications).items() if n > 1]
    delivered = Counter(i for i, _valid in deliveries)
    assert set(delivered) == {i for i, _r, _d in notifications}
    assert all(valid for _i, valid in deliveries)
    assert {i for i, n in delivered.items() if n > 1} <= set(leased)
