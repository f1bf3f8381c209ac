"""The scheduler edge: named APScheduler jobs driven by the injectable clock.

Jobs read the clock and hand ``now`` down; the same job functions run in
``fieldops serve`` (in process), ``fieldops scheduler run`` (alone) and drills (on a
simulated clock, called step by step).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session, sessionmaker

from fieldops.clock import Clock
from fieldops.db.engine import READ_ONLY, unit_of_work
from fieldops.dispatch.service import TravelModel
from fieldops.emergencies.service import BatchRound, due_for_batch, run_batch_round
from fieldops.escalation.actions import EscalationActions
from fieldops.escalation.service import Fired, fire_due
from fieldops.notifications.service import LogSender, Outbox, Sender, deliver_due

log = logging.getLogger("fieldops.scheduler")


@dataclass
class Jobs:
    """The scheduled work of one FieldOps installation (or one drill)."""

    sessions: sessionmaker[Session]
    clock: Clock
    travel: Callable[[], TravelModel]
    stale_after: timedelta
    outbox: Outbox = field(default_factory=Outbox)
    sender: Sender = field(default_factory=LogSender)
    # Steps fired per tick (one transaction); the rest wait for the next tick.
    tick_limit: int = 1000
    _actions: EscalationActions | None = field(default=None, init=False, repr=False)
    # When each active emergency's area was last batch-dispatched. In memory on purpose:
    # after a restart every area runs at the first tick, which is harmless (a round only
    # assigns what is unassigned) and needs no table of its own.
    _batch_runs: dict[int, datetime] = field(default_factory=dict, init=False, repr=False)

    def escalation_tick(self) -> list[Fired]:
        """Fire every escalation step that is due, exactly once, oldest deadline first."""
        if self._actions is None:
            self._actions = EscalationActions(
                travel=self.travel(), stale_after=self.stale_after, outbox=self.outbox
            )
        actions = self._actions
        with unit_of_work(self.sessions) as session:
            fired = fire_due(
                session, now=self.clock.now(), run_action=actions, limit=self.tick_limit
            )
        for f in fired:
            log.info(
                "escalation %s on incident %s: %s (%s)", f.action, f.incident_id, f.status, f.reason
            )
        return fired

    def deliver_notifications(self) -> tuple[int, int]:
        """Send what the outbox owes; failures are retried later."""
        with unit_of_work(self.sessions) as session:
            return deliver_due(session, self.sender, now=self.clock.now())

    def emergency_batch(self) -> list[BatchRound]:
        """Batch-dispatch over each active emergency's area every ``batch_every_s``; one
        transaction per area, so one failing round holds up no other."""
        now = self.clock.now()
        with self.sessions() as session:
            # A read: on SpatiaLite it must not take the write lock every second.
            session.connection(execution_options=READ_ONLY)
            due = due_for_batch(session, now=now, last_run=self._batch_runs)
            session.rollback()
        rounds = []
        for emergency_id in due:
            try:
                with unit_of_work(self.sessions) as session:
                    done = run_batch_round(
                        session,
                        emergency_id,
                        now=now,
                        travel=self.travel(),
                        stale_after=self.stale_after,
                    )
            except Exception:
                log.exception("emergency %s: batch round failed; retried next tick", emergency_id)
                continue
            self._batch_runs[emergency_id] = now
            if done.assigned:
                log.info("emergency %s: batch assigned %s", emergency_id, done.assigned)
            rounds.append(done)
        return rounds

    def schedule(self) -> dict[str, tuple[Callable[[], object], float]]:
        """Every job by name, with its interval in seconds."""
        return {
            "escalation-tick": (self.escalation_tick, 1.0),
            "deliver-notifications": (self.deliver_notifications, 2.0),
            "emergency-batch": (self.emergency_batch, 1.0),
        }


def build_scheduler(jobs: Jobs) -> BackgroundScheduler:
    """A background scheduler running each job on its interval, one run at a time per job
    (a late run is coalesced, never run twice in a row)."""
    scheduler = BackgroundScheduler(timezone="UTC")
    for name, (func, every_s) in jobs.schedule().items():
        scheduler.add_job(
            func,
            "interval",
            seconds=every_s,
            id=name,
            name=name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
    return scheduler
