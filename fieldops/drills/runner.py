"""The drill runner: an edge that owns a ManualClock and drives the real services and the
real scheduler jobs through a scenario on a simulated clock.

Each scheduler tick is one step: every event due since the last tick (reports, crew
steps, injects) is applied in time order in one transaction, runs of reports taken in by
one ``submit_many`` call and crews' steps by one ``act_on_assignments`` call; then batch
dispatch and the scheduler jobs (escalation, notifications, emergency batches) run as in
production, each in its own transaction.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from fieldops.db.engine import unit_of_work
from fieldops.dispatch.service import TravelModel, batch_dispatch
from fieldops.drills.fleet import Fleet
from fieldops.drills.model import ACTOR, STALE_AFTER, DrillOptions, DrillResult
from fieldops.drills.records import crew_tracks, greedy_round, incident_timeline
from fieldops.drills.replay import ReplayCounts
from fieldops.drills.setup import World, build_world
from fieldops.drills.spec import Inject, Scenario
from fieldops.emergencies.service import NewEmergency, declare_emergency, end_emergency
from fieldops.errors import FieldOpsError
from fieldops.incidents.models import Channel
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import Submission, submit_many
from fieldops.notifications.models import Notification

log = logging.getLogger("fieldops.drills")


class Drill:
    """One run of a scenario on its own database (see ``fieldops.drills.database``)."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        db_url: str,
        layers_dir: Path,
        options: DrillOptions,
        travel: TravelModel | None = None,
    ) -> None:
        self.scenario = scenario
        self.options = options
        self.layers_dir = layers_dir
        self.db_url = db_url
        self.seed = scenario.drill.seed if options.seed is None else options.seed
        self.rng = np.random.default_rng(self.seed)
        self.start = scenario.start_at
        hours = options.duration_h or scenario.drill.duration_h
        self.end = self.start + timedelta(hours=hours)
        self._travel = travel
        self._queue: list[tuple[datetime, int, str, tuple[Any, ...]]] = []
        self._seq = 0
        self.escalations: Counter[str] = Counter()
        self.escalations_by_status: Counter[str] = Counter()
        self.emergencies: dict[str, int] = {}
        self.initial_priority: dict[int, int] = {}
        self.merged = self.rejected = self.submitted = 0
        self.timings_s: dict[str, float] = {}
        self.replay = ReplayCounts()

    @contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        begun = time.perf_counter()
        try:
            yield
        finally:
            self.timings_s[part] = self.timings_s.get(part, 0.0) + time.perf_counter() - begun

    def _at(self, when: datetime, kind: str, *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, kind, args))

    # --- set-up ------------------------------------------------------------------------------

    def setup(self) -> None:
        """Migrate the drill's database, load the city and the drill's crews, and draw every
        arrival of the drill (seeded)."""
        with self._timed("setup"):
            world: World = build_world(
                self.scenario,
                db_url=self.db_url,
                layers_dir=self.layers_dir,
                options=self.options,
                start=self.start,
                end=self.end,
                rng=self.rng,
                travel=self._travel,
                replay=self.replay,
            )
        self.world = world
        self.clock = world.clock
        self.sessions = world.sessions
        self.arrivals = world.arrivals
        self.fleet = Fleet(
            world.crews,
            behaviour=self.scenario.behaviour,
            clock=world.clock,
            start=self.start,
            travel=world.travel,
            rng=self.rng,
            schedule=self._at,
        )
        for n, arrival in enumerate(self.arrivals):
            self._at(arrival.at, "arrival", n)
        for inject in self.scenario.inject:
            when = self.start + timedelta(hours=inject.at_h)
            if when <= self.end:
                self._at(when, "inject", inject)

    # --- events ------------------------------------------------------------------------------

    def _take_in(self, session: Session, numbers: list[int]) -> None:
        """A run of consecutive reports through intake in one call, each at its own instant."""
        if not numbers:
            return
        name = self.scenario.drill.name
        submissions = []
        for n in numbers:
            a = self.arrivals[n]
            submissions.append(
                Submission(
                    NewReport(
                        service_code=a.service_code,
                        lon=a.lon,
                        lat=a.lat,
                        channel=Channel.DRILL,
                        description=f"[EXERCISE] {name}"
                        + (f" (replay of {a.origin})" if a.origin else ""),
                        source_ref=f"drill-{n}",
                        priority=a.priority,
                    ),
                    ACTOR,
                    a.at,
                )
            )
        with self._timed("intake"), session.begin_nested():
            results = submit_many(session, submissions, context=self.world.context)
        for n, result in zip(numbers, results, strict=True):
            if isinstance(result, FieldOpsError):
                self.rejected += 1
                log.debug("drill report %s refused: %s", n, result)
                continue
            self.submitted += 1
            self.merged += int(result.merged)
            if not result.merged:
                self.initial_priority[result.incident.id] = result.incident.priority

    def _inject(self, session: Session, inject: Inject) -> None:
        now = self.clock.now()
        if inject.action == "crew_breakdown":
            self.fleet.breakdown(session, inject.crew, inject.for_h)
            return
        with session.begin_nested():
            if inject.action == "declare_emergency":
                declared = declare_emergency(
                    session,
                    NewEmergency(
                        name=inject.name,
                        hazard=inject.hazard,
                        service_codes=inject.services,
                        district_ids=[self.world.district_ids[d] for d in inject.districts],
                        deadline_factor=inject.deadline_factor,
                        batch_every_s=self.scenario.drill.dispatch_every_s,
                    ),
                    actor=ACTOR,
                    now=now,
                )
                self.emergencies[inject.name] = declared.emergency.id
            elif inject.action == "end_emergency":
                end_emergency(session, self.emergencies[inject.name], actor=ACTOR, now=now)

    def _drain(self, until: datetime) -> None:
        """Every event due by ``until``, in order, in one transaction. Reports are taken in
        by runs, crews' steps in batches (see ``fieldops.drills.fleet``): a run of reports
        goes in before a finished job that came after it, and after one nearby that came
        before."""
        handlers = self.fleet.handlers()
        fleet = self.fleet
        # A report can only be a duplicate of an incident this close (twice the widest
        # duplicate radius of the catalogue, to be safe).
        reach_m = 2.0 * max(s.duplicate_radius_m for s in self.world.context.services.values())
        with unit_of_work(self.sessions) as session:
            with self._timed("crews"):
                fleet.discover(session)
            run: list[int] = []
            while self._queue and self._queue[0][0] <= until:
                when, _, kind, args = heapq.heappop(self._queue)
                if kind == "arrival":
                    arrival = self.arrivals[args[0]]
                    if fleet.closes_within(arrival.lon, arrival.lat, reach_m):
                        self._take_in(session, run)
                        run = []
                        with self._timed("crews"):
                            fleet.flush(session)
                    run.append(args[0])
                    continue
                self.clock.set(max(when, self.clock.now()))
                if kind == "inject":
                    self._take_in(session, run)
                    run = []
                    with self._timed("crews"):
                        fleet.flush(session)
                    with self._timed("injects"):
                        self._inject(session, *args)
                    continue
                with self._timed("crews"):
                    handlers[kind](session, *args)
            self._take_in(session, run)
            with self._timed("crews"):
                fleet.flush(session)
            with self._timed("commit"):
                session.flush()

    # --- scheduler ticks ---------------------------------------------------------------------

    def _dispatch_round(self) -> None:
        now = self.clock.now()
        travel = self.world.travel
        with unit_of_work(self.sessions) as session:
            if self.options.strategy == "optimal":
                batch_dispatch(
                    session,
                    actor=f"{ACTOR}:batch",
                    now=now,
                    travel=travel,
                    stale_after=STALE_AFTER,
                    baseline=False,
                )
                return
            greedy_round(
                session, now=now, travel=travel, actor=f"{ACTOR}:greedy", stale_after=STALE_AFTER
            )

    def _tick(self, k: int) -> None:
        drill = self.scenario.drill
        jobs = self.world.jobs
        if (k * drill.tick_s) % drill.dispatch_every_s == 0:
            with self._timed("dispatch"):
                self._dispatch_round()
            with self._timed("emergency_batch"):
                jobs.emergency_batch()
        with self._timed("escalation"):
            for fired in jobs.escalation_tick():
                self.escalations[fired.action] += 1
                self.escalations_by_status[f"{fired.action}:{fired.status}"] += 1
        with self._timed("notifications"):
            jobs.deliver_notifications()

    def run(self, on_step: Callable[[float], None] | None = None) -> DrillResult:
        """Play the scenario to its end; ``on_step`` hears the share done after each tick."""
        tick = timedelta(seconds=self.scenario.drill.tick_s)
        total_s = (self.end - self.start).total_seconds()
        k = 0
        while (at := self.start + k * tick) <= self.end:
            self._drain(at)
            self.clock.set(at)
            if k and (k * self.scenario.drill.tick_s) % 3600 == 0:
                with self._timed("shifts"):
                    self.world.roll_shifts(self.clock.now())
            self._tick(k)
            if on_step is not None:
                on_step(min((at - self.start).total_seconds() / total_s, 1.0))
            k += 1
        for sim in self.fleet.crews.values():
            self.fleet.stop_busy(sim)
        with self._timed("read_back"):
            return self._result()

    def _result(self) -> DrillResult:
        import sqlalchemy as sa

        with self.sessions() as session:
            timeline = incident_timeline(session)
            tracks = crew_tracks(session, list(self.fleet.crews))
            notes = [
                {
                    "recipient": n.recipient,
                    "subject": n.subject,
                    "exercise": n.exercise,
                    "status": str(n.status),
                }
                for n in session.scalars(sa.select(Notification).order_by(Notification.id))
            ]
            session.rollback()
        timeline["initial_priority"] = (
            timeline["incident_id"]
            .map(self.initial_priority)
            .fillna(timeline["priority"])
            .astype(int)
        )
        self.world.engine.dispose()
        return DrillResult(
            scenario=self.scenario,
            strategy=self.options.strategy,
            seed=self.seed,
            scale=self.options.scale,
            crew_scale=self.options.crew_scale,
            start=self.start,
            end=self.end,
            timezone=self.world.timezone,
            arrivals=self.arrivals,
            replay=replace(self.replay),
            reports_submitted=self.submitted,
            reports_merged=self.merged,
            reports_rejected=self.rejected,
            initial_priority=self.initial_priority,
            timeline=timeline,
            tracks=tracks,
            crews=list(self.fleet.crews.values()),
            escalations=self.escalations,
            escalations_by_status=self.escalations_by_status,
            notifications=notes,
            sent=list(self.world.sender.sent),
            roster=self.world.roster,
            stranded=list(self.fleet.stranded),
            refused_steps=self.fleet.refused,
            db_url=self.db_url,
            timings_s={k: round(v, 3) for k, v in sorted(self.timings_s.items())},
        )
