"""The drill runner: an edge that owns a ManualClock and drives the real services and the
real scheduler jobs through a scenario, one transaction per simulated step."""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.orm import Session, sessionmaker

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewStatus
from fieldops.crews.service import Fix, load_crews, record_positions
from fieldops.db.engine import make_engine, make_sessionmaker, unit_of_work
from fieldops.db.migrate import upgrade
from fieldops.dispatch import repo as dispatch_repo
from fieldops.dispatch.models import Assignment, AssignmentStatus
from fieldops.dispatch.service import (
    TravelModel,
    act_on_assignment,
    assign_crew,
    batch_dispatch,
    recommend_crews,
    refresh_crew_status,
)
from fieldops.drills.records import greedy_round, incident_timeline
from fieldops.drills.setup import (
    RecordingSender,
    crew_specs,
    district_lookup,
    fast_sqlite,
    sampling_areas,
)
from fieldops.drills.spec import Scenario
from fieldops.drills.world import Arrival, generate_arrivals
from fieldops.emergencies.service import NewEmergency, declare_emergency, end_emergency
from fieldops.errors import Conflict, FieldOpsError
from fieldops.incidents.models import Channel, Incident
from fieldops.intake.context import IntakeContext
from fieldops.intake.schemas import NewReport
from fieldops.intake.service import submit_report
from fieldops.notifications.models import Notification
from fieldops.notifications.service import Outbox

log = logging.getLogger("fieldops.drills")

ACTOR = "drill"
STALE_AFTER = timedelta(minutes=5)
Strategy = Literal["optimal", "greedy"]


@dataclass(frozen=True)
class DrillOptions:
    seed: int | None = None  # None: the scenario's
    scale: float = 1.0  # multiplies every arrival rate
    duration_h: float | None = None  # None: the scenario's
    strategy: Strategy = "optimal"


@dataclass
class CrewSim:
    """One simulated crew: where it is, what it holds, when it was busy."""

    crew_id: int
    name: str
    lon: float
    lat: float
    queue: list[int] = field(default_factory=list)  # accepted assignment ids, in order
    current: int | None = None
    broken: bool = False
    busy: list[tuple[float, float]] = field(default_factory=list)  # [start, end) seconds
    busy_since: float | None = None


@dataclass
class DrillResult:
    scenario: Scenario
    strategy: Strategy
    seed: int
    scale: float
    start: datetime
    end: datetime
    arrivals: list[Arrival]
    reports_submitted: int
    reports_merged: int
    reports_rejected: int
    initial_priority: dict[int, int]
    timeline: pd.DataFrame
    crews: list[CrewSim]
    escalations: Counter[str]
    escalations_by_status: Counter[str]
    notifications: list[dict[str, Any]]
    roster: frozenset[str]
    stranded: list[int]
    db_url: str


class Drill:
    """One run of a scenario on its own database."""

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
        self.clock = ManualClock(self.start)
        self._travel = travel
        self._queue: list[tuple[datetime, int, str, tuple[Any, ...]]] = []
        self._seq = 0
        self.crews: dict[int, CrewSim] = {}
        self.seen_assignments: set[int] = set()
        self.escalations: Counter[str] = Counter()
        self.escalations_by_status: Counter[str] = Counter()
        self.emergencies: dict[str, int] = {}
        self.initial_priority: dict[int, int] = {}
        self.merged = self.rejected = self.submitted = 0
        self.stranded: list[int] = []

    # --- the queue ---------------------------------------------------------------------------

    def _at(self, when: datetime, kind: str, *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, kind, args))

    def _s(self, when: datetime) -> float:
        return (when - self.start).total_seconds()

    # --- set-up ------------------------------------------------------------------------------

    def setup(self) -> None:
        from fieldops.catalog.spec import read_city
        from fieldops.city import load_city
        from fieldops.dispatch.travel import load_travel_model
        from fieldops.scheduler import Jobs

        engine = make_engine(self.db_url)
        if engine.dialect.name == "sqlite":
            fast_sqlite(engine)
        upgrade(engine)
        self.engine = engine
        self.sessions: sessionmaker[Session] = make_sessionmaker(engine)
        city = read_city(self.layers_dir / "city.toml").city
        self.timezone = city.timezone
        with unit_of_work(self.sessions) as session:
            load_city(session, self.layers_dir, now=self.start)
            district_ids, codes, shapes = district_lookup(session)
            if not self.scenario.crews.keep_city_roster:
                for crew in session.scalars(sa.select(Crew)):
                    crew.status = CrewStatus.OFF_DUTY
            self.crew_specs = crew_specs(self.scenario, session, district_ids, codes, shapes)
            self.district_ids = district_ids
            load_crews(
                session,
                self.crew_specs,
                district_ids={c: i for i, c in codes.items()},
                now=self.start,
                timezone=self.timezone,
                roster="drill",
            )
            session.flush()
            self.context = IntakeContext.load(session)
            crews = [
                c
                for c in session.scalars(sa.select(Crew).order_by(Crew.id))
                if c.status != CrewStatus.OFF_DUTY
            ]
            for c in crews:
                record_positions(
                    session, c.id, [Fix(c.depot_lon, c.depot_lat, self.start)], now=self.start
                )
                self.crews[c.id] = CrewSim(c.id, c.name, c.depot_lon, c.depot_lat)
        areas = sampling_areas(self.scenario, self.layers_dir, district_ids, shapes)
        locate = self.context.districts.locate

        def served(lon: NDArray[np.float64], lat: NDArray[np.float64]) -> NDArray[np.bool_]:
            return np.array(
                [locate(float(x), float(y)) is not None for x, y in zip(lon, lat, strict=True)],
                dtype=bool,
            )

        self.arrivals = generate_arrivals(
            self.scenario.arrivals,
            areas,
            start=self.start,
            duration_h=(self.end - self.start).total_seconds() / 3600,
            scale=self.options.scale,
            rng=self.rng,
            served=served,
        )
        # The drill's own recipients: its crews, the supervisors of the districts it touches
        # and whoever the scenario lists. Anyone else is dropped by the exercise outbox.
        touched = {
            codes[district_ids[d]]
            for d in [
                *(d for g in self.scenario.crews.group for d in g.districts),
                *(d for a in self.scenario.arrivals for d in a.area.districts),
                *(d for i in self.scenario.inject for d in i.districts),
            ]
        } | {codes[i] for a in self.arrivals if (i := locate(a.lon, a.lat)) is not None}
        self.roster = frozenset(
            [f"crew:{c}" for c in self.crews]
            + [f"supervisor:{code}" for code in sorted(touched)]
            + list(self.scenario.drill.roster)
        )
        self.sender = RecordingSender()
        if self._travel is None:
            self._travel = load_travel_model(self.layers_dir, metric_crs=city.metric_crs)
        travel = self._travel
        self.jobs = Jobs(
            sessions=self.sessions,
            clock=self.clock,
            travel=lambda: travel,
            stale_after=STALE_AFTER,
            outbox=Outbox(exercise=True, roster=self.roster),
            sender=self.sender,
        )
        for n, arrival in enumerate(self.arrivals):
            self._at(arrival.at, "arrival", n)
        for inject in self.scenario.inject:
            when = self.start + timedelta(hours=inject.at_h)
            if when <= self.end:
                self._at(when, "inject", inject)

    # --- steps -------------------------------------------------------------------------------

    def _travel_s(self, lon: float, lat: float, from_lon: float, from_lat: float) -> float:
        assert self._travel is not None
        times = self._travel.travel_to(lon, lat, [from_lon], [from_lat])
        return float(times.seconds[0]) * self.scenario.behaviour.speed_factor

    def _arrival(self, n: int) -> None:
        a = self.arrivals[n]
        now = self.clock.now()
        try:
            with unit_of_work(self.sessions) as session:
                outcome = submit_report(
                    session,
                    NewReport(
                        service_code=a.service_code,
                        lon=a.lon,
                        lat=a.lat,
                        channel=Channel.DRILL,
                        description=f"[EXERCISE] {self.scenario.drill.name}",
                        source_ref=f"drill-{n}",
                        priority=a.priority,
                    ),
                    context=self.context,
                    actor=ACTOR,
                    now=now,
                )
                if not outcome.merged:
                    self.initial_priority[outcome.incident.id] = outcome.incident.priority
        except FieldOpsError as exc:
            self.rejected += 1
            log.info("drill report %s refused: %s", n, exc)
            return
        self.submitted += 1
        self.merged += int(outcome.merged)

    def _inject(self, inject: Any) -> None:
        now = self.clock.now()
        with unit_of_work(self.sessions) as session:
            if inject.action == "declare_emergency":
                declared = declare_emergency(
                    session,
                    NewEmergency(
                        name=inject.name,
                        hazard=inject.hazard,
                        service_codes=inject.services,
                        district_ids=[self.district_ids[d] for d in inject.districts],
                        deadline_factor=inject.deadline_factor,
                        batch_every_s=self.scenario.drill.dispatch_every_s,
                    ),
                    actor=ACTOR,
                    now=now,
                )
                self.emergencies[inject.name] = declared.emergency.id
            elif inject.action == "end_emergency":
                end_emergency(session, self.emergencies[inject.name], actor=ACTOR, now=now)
        if inject.action == "crew_breakdown":
            self._breakdown(inject.crew, inject.for_h)

    def _crew_named(self, name: str) -> CrewSim | None:
        return next((c for c in self.crews.values() if c.name == name), None)

    def _breakdown(self, name: str, for_h: float | None) -> None:
        """A crew's vehicle breaks down: it goes off duty, declines what it has not started,
        finishes a job it is already on scene at, and a job it was driving to is handed to
        the best other crew (or left stranded when none can take it)."""
        sim = self._crew_named(name)
        if sim is None or sim.broken:
            return
        now = self.clock.now()
        travel = self._travel
        assert travel is not None
        sim.broken = True
        under_way: list[int] = []
        with unit_of_work(self.sessions) as session:
            crew = session.get(Crew, sim.crew_id)
            assert crew is not None
            crew.status = CrewStatus.OFF_DUTY
            for a, _ in dispatch_repo.crew_assignments(session, sim.crew_id):
                if a.status in {AssignmentStatus.PENDING, AssignmentStatus.ACCEPTED}:
                    act_on_assignment(
                        session,
                        a.id,
                        crew_id=sim.crew_id,
                        action="decline",
                        version=None,
                        note="vehicle breakdown (drill inject)",
                        actor=f"crew:{sim.crew_id}",
                        now=now,
                    )
                elif a.status == AssignmentStatus.EN_ROUTE:
                    under_way.append(a.incident_id)
        for incident_id in under_way:
            try:
                with unit_of_work(self.sessions) as session:
                    _, ranked = recommend_crews(
                        session, incident_id, now=now, travel=travel, stale_after=STALE_AFTER
                    )
                    if not ranked:
                        raise Conflict("no other crew can take it")
                    best = ranked[0]
                    assign_crew(
                        session,
                        incident_id,
                        best.crew_id,
                        actor=f"{ACTOR}:dispatcher",
                        now=now,
                        travel=travel,
                        stale_after=STALE_AFTER,
                        eta_s=best.eta_s,
                        travel_model=best.travel_model,
                    )
            except FieldOpsError as exc:
                log.info("incident %s stranded by the breakdown: %s", incident_id, exc)
                self.stranded.append(incident_id)
        sim.queue.clear()
        with self.sessions() as session:
            current = session.get(Assignment, sim.current) if sim.current is not None else None
            on_scene = current is not None and current.status == AssignmentStatus.ON_SCENE
            session.rollback()
        if not on_scene:
            sim.current = None
            self._stop_busy(sim)
        if for_h is not None:
            self._at(now + timedelta(hours=for_h), "repair", sim.crew_id)

    def _repair(self, crew_id: int) -> None:
        sim = self.crews[crew_id]
        sim.broken = False
        with unit_of_work(self.sessions) as session:
            crew = session.get(Crew, crew_id)
            assert crew is not None
            crew.status = CrewStatus.AVAILABLE
            refresh_crew_status(session, crew)

    def _act(self, sim: CrewSim, assignment_id: int, action: str, note: str = "") -> bool:
        """The crew's step through the real service; False if the job is no longer its own."""
        try:
            with unit_of_work(self.sessions) as session:
                act_on_assignment(
                    session,
                    assignment_id,
                    crew_id=sim.crew_id,
                    action=action,
                    version=None,
                    note=note,
                    actor=f"crew:{sim.crew_id}",
                    now=self.clock.now(),
                )
        except FieldOpsError as exc:  # reassigned, withdrawn or closed meanwhile
            log.info(
                "crew %s: %s on assignment %s not applied: %s", sim.name, action, assignment_id, exc
            )
            return False
        return True

    def _respond(self, crew_id: int, assignment_id: int, accept: bool) -> None:
        sim = self.crews[crew_id]
        if sim.broken:
            return
        if not accept:
            self._act(sim, assignment_id, "decline", "cannot take it now (simulated)")
            return
        if self._act(sim, assignment_id, "accept"):
            sim.queue.append(assignment_id)
            self._next_job(sim)

    def _start_busy(self, sim: CrewSim) -> None:
        if sim.busy_since is None:
            sim.busy_since = self._s(self.clock.now())

    def _stop_busy(self, sim: CrewSim) -> None:
        if sim.busy_since is not None:
            sim.busy.append((sim.busy_since, self._s(self.clock.now())))
            sim.busy_since = None

    def _next_job(self, sim: CrewSim) -> None:
        while sim.current is None and sim.queue and not sim.broken:
            assignment_id = sim.queue.pop(0)
            if not self._act(sim, assignment_id, "en_route"):
                continue
            with self.sessions() as session:
                a = session.get(Assignment, assignment_id)
                assert a is not None
                incident = session.get(Incident, a.incident_id)
                assert incident is not None
                lon, lat = incident.lon, incident.lat
                service = incident.service_code
            sim.current = assignment_id
            self._start_busy(sim)
            travel_s = self._travel_s(lon, lat, sim.lon, sim.lat)
            self._at(
                self.clock.now() + timedelta(seconds=round(travel_s, 1)),
                "arrive",
                sim.crew_id,
                assignment_id,
                lon,
                lat,
                service,
            )
        if sim.current is None:
            self._stop_busy(sim)

    def _arrive(
        self, crew_id: int, assignment_id: int, lon: float, lat: float, service: str
    ) -> None:
        sim = self.crews[crew_id]
        if sim.current != assignment_id:
            return
        if not self._act(sim, assignment_id, "on_scene"):
            sim.current = None
            self._next_job(sim)
            return
        sim.lon, sim.lat = lon, lat
        with unit_of_work(self.sessions) as session:
            record_positions(
                session, crew_id, [Fix(lon, lat, self.clock.now())], now=self.clock.now()
            )
        behaviour = self.scenario.behaviour
        low, high = behaviour.work_min_by_service.get(service, behaviour.work_min)
        work_s = float(self.rng.uniform(low, high)) * 60.0
        self._at(
            self.clock.now() + timedelta(seconds=round(work_s, 1)), "done", crew_id, assignment_id
        )

    def _done(self, crew_id: int, assignment_id: int) -> None:
        sim = self.crews[crew_id]
        if sim.current != assignment_id:
            return
        self._act(sim, assignment_id, "done")
        sim.current = None
        self._next_job(sim)

    def _dispatch_round(self) -> None:
        now = self.clock.now()
        travel = self._travel
        assert travel is not None
        with unit_of_work(self.sessions) as session:
            if self.options.strategy == "optimal":
                batch_dispatch(
                    session, actor=f"{ACTOR}:batch", now=now, travel=travel, stale_after=STALE_AFTER
                )
                return
            greedy_round(
                session, now=now, travel=travel, actor=f"{ACTOR}:greedy", stale_after=STALE_AFTER
            )

    def _discover(self) -> None:
        """New assignments (batch, emergency batch, escalation): their crews respond later."""
        with self.sessions() as session:
            fresh = session.execute(
                sa.select(Assignment.id, Assignment.crew_id)
                .where(
                    Assignment.is_active.is_(True), Assignment.status == AssignmentStatus.PENDING
                )
                .order_by(Assignment.id)
            ).all()
            session.rollback()
        behaviour = self.scenario.behaviour
        now = self.clock.now()
        for assignment_id, crew_id in fresh:
            if assignment_id in self.seen_assignments or crew_id not in self.crews:
                continue
            self.seen_assignments.add(assignment_id)
            accept = bool(self.rng.uniform() >= behaviour.decline_probability)
            delay = float(self.rng.uniform(*behaviour.acknowledge_delay_s))
            self._at(
                now + timedelta(seconds=round(delay, 1)), "respond", crew_id, assignment_id, accept
            )

    def _tick(self, k: int) -> None:
        drill = self.scenario.drill
        if (k * drill.tick_s) % drill.dispatch_every_s == 0:
            self._dispatch_round()
            self.jobs.emergency_batch()
        for fired in self.jobs.escalation_tick():
            self.escalations[fired.action] += 1
            self.escalations_by_status[f"{fired.action}:{fired.status}"] += 1
        self.jobs.deliver_notifications()
        self._discover()

    def _roll_shifts(self) -> None:
        # What a roster job does at each shift change: shifts follow the simulated day.
        with unit_of_work(self.sessions) as session:
            load_crews(
                session,
                self.crew_specs,
                district_ids={c.district: self.district_ids[c.district] for c in self.crew_specs},
                now=self.clock.now(),
                timezone=self.timezone,
                roster="drill",
            )

    def run(self, on_step: Callable[[float], None] | None = None) -> DrillResult:
        handlers: dict[str, Callable[..., None]] = {
            "arrival": self._arrival,
            "inject": self._inject,
            "respond": self._respond,
            "arrive": self._arrive,
            "done": self._done,
            "repair": self._repair,
        }
        tick = timedelta(seconds=self.scenario.drill.tick_s)
        total_s = (self.end - self.start).total_seconds()
        k = 0
        while True:
            at = self.start + k * tick
            if at > self.end:
                break
            while self._queue and self._queue[0][0] <= at:
                when, _, kind, args = heapq.heappop(self._queue)
                self.clock.set(max(when, self.clock.now()))
                handlers[kind](*args)
            self.clock.set(at)
            if k and (k * self.scenario.drill.tick_s) % 3600 == 0:
                self._roll_shifts()
            self._tick(k)
            if on_step is not None:
                on_step(min(self._s(at) / total_s, 1.0))
            k += 1
        for sim in self.crews.values():
            self._stop_busy(sim)
        return self._result()

    def _result(self) -> DrillResult:
        with self.sessions() as session:
            timeline = incident_timeline(session)
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
        self.engine.dispose()
        return DrillResult(
            scenario=self.scenario,
            strategy=self.options.strategy,
            seed=self.seed,
            scale=self.options.scale,
            start=self.start,
            end=self.end,
            arrivals=self.arrivals,
            reports_submitted=self.submitted,
            reports_merged=self.merged,
            reports_rejected=self.rejected,
            initial_priority=self.initial_priority,
            timeline=timeline,
            crews=list(self.crews.values()),
            escalations=self.escalations,
            escalations_by_status=self.escalations_by_status,
            notifications=notes,
            roster=self.roster,
            stranded=self.stranded,
            db_url=self.db_url,
        )
