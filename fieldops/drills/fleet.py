"""The drill's simulated crews: they answer assignments, drive, work and break down, each step
through the real crew service (``act_on_assignment``) on the session the runner hands in.

Every step runs in a savepoint of the runner's transaction: a step the service refuses
(the job was reassigned or closed meanwhile) is rolled back alone and the crew moves on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.clock import ManualClock
from fieldops.crews.models import Crew, CrewStatus
from fieldops.crews.service import Fix, record_positions
from fieldops.dispatch import repo as dispatch_repo
from fieldops.dispatch.crew_steps import act_on_assignment
from fieldops.dispatch.models import Assignment, AssignmentStatus
from fieldops.dispatch.service import (
    TravelModel,
    assign_crew,
    recommend_crews,
    refresh_crew_status,
)
from fieldops.drills.model import ACTOR, STALE_AFTER, CrewSim
from fieldops.drills.spec import Behaviour
from fieldops.errors import Conflict, FieldOpsError
from fieldops.incidents.models import Incident

log = logging.getLogger("fieldops.drills")

# Schedules a later step: (when, kind, *args).
Schedule = Callable[..., None]


class Fleet:
    """The drill's crews and what they do; ``schedule`` puts their next steps on the queue."""

    def __init__(
        self,
        crews: dict[int, CrewSim],
        *,
        behaviour: Behaviour,
        clock: ManualClock,
        start: datetime,
        travel: TravelModel,
        rng: np.random.Generator,
        schedule: Schedule,
    ) -> None:
        self.crews = crews
        self.behaviour = behaviour
        self.clock = clock
        self.start = start
        self.travel = travel
        self.rng = rng
        self.schedule = schedule
        self.seen: set[int] = set()
        # Assignment id -> (lon, lat, service) of its incident, read when it is discovered.
        self.where: dict[int, tuple[float, float, str]] = {}
        self.by_name = {c.name: c for c in crews.values()}
        self.stranded: list[int] = []

    def _s(self, when: datetime) -> float:
        return (when - self.start).total_seconds()

    # --- new work ---------------------------------------------------------------------------

    def discover(self, session: Session) -> None:
        """New assignments (batch, emergency batch, escalation): their crews answer later."""
        fresh = session.execute(
            sa.select(
                Assignment.id,
                Assignment.crew_id,
                Incident.lon,
                Incident.lat,
                Incident.service_code,
            )
            .join(Incident, Incident.id == Assignment.incident_id)
            .where(Assignment.is_active.is_(True), Assignment.status == AssignmentStatus.PENDING)
            .order_by(Assignment.id)
        ).all()
        now = self.clock.now()
        for assignment_id, crew_id, lon, lat, service in fresh:
            if assignment_id in self.seen or crew_id not in self.crews:
                continue
            self.seen.add(assignment_id)
            self.where[assignment_id] = (lon, lat, service)
            accept = bool(self.rng.uniform() >= self.behaviour.decline_probability)
            delay = float(self.rng.uniform(*self.behaviour.acknowledge_delay_s))
            self.schedule(
                now + timedelta(seconds=round(delay, 1)), "respond", crew_id, assignment_id, accept
            )

    # --- a crew's steps ---------------------------------------------------------------------

    def act(
        self, session: Session, sim: CrewSim, assignment_id: int, action: str, note: str = ""
    ) -> bool:
        """The crew's step through the real service; False if the job is no longer its own."""
        try:
            with session.begin_nested():
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
            log.debug(
                "crew %s: %s on assignment %s not applied: %s", sim.name, action, assignment_id, exc
            )
            return False
        return True

    def respond(self, session: Session, crew_id: int, assignment_id: int, accept: bool) -> None:
        sim = self.crews[crew_id]
        if sim.broken:
            return
        if not accept:
            self.act(session, sim, assignment_id, "decline", "cannot take it now (simulated)")
            return
        if self.act(session, sim, assignment_id, "accept"):
            sim.queue.append(assignment_id)
            self.next_job(session, sim)

    def _start_busy(self, sim: CrewSim) -> None:
        if sim.busy_since is None:
            sim.busy_since = self._s(self.clock.now())

    def stop_busy(self, sim: CrewSim) -> None:
        if sim.busy_since is not None:
            sim.busy.append((sim.busy_since, self._s(self.clock.now())))
            sim.busy_since = None

    def _travel_s(self, lon: float, lat: float, from_lon: float, from_lat: float) -> float:
        times = self.travel.travel_to(lon, lat, [from_lon], [from_lat])
        return float(times.seconds[0]) * self.behaviour.speed_factor

    def next_job(self, session: Session, sim: CrewSim) -> None:
        while sim.current is None and sim.queue and not sim.broken:
            assignment_id = sim.queue.pop(0)
            if not self.act(session, sim, assignment_id, "en_route"):
                continue
            lon, lat, _ = self.where[assignment_id]
            sim.current = assignment_id
            self._start_busy(sim)
            travel_s = self._travel_s(lon, lat, sim.lon, sim.lat)
            self.schedule(
                self.clock.now() + timedelta(seconds=round(travel_s, 1)),
                "arrive",
                sim.crew_id,
                assignment_id,
            )
        if sim.current is None:
            self.stop_busy(sim)

    def arrive(self, session: Session, crew_id: int, assignment_id: int) -> None:
        sim = self.crews[crew_id]
        if sim.current != assignment_id:
            return
        if not self.act(session, sim, assignment_id, "on_scene"):
            sim.current = None
            self.next_job(session, sim)
            return
        lon, lat, service = self.where[assignment_id]
        sim.lon, sim.lat = lon, lat
        now = self.clock.now()
        with session.begin_nested():
            record_positions(session, crew_id, [Fix(lon, lat, now)], now=now)
        low, high = self.behaviour.work_min_by_service.get(service, self.behaviour.work_min)
        work_s = float(self.rng.uniform(low, high)) * 60.0
        self.schedule(now + timedelta(seconds=round(work_s, 1)), "done", crew_id, assignment_id)

    def done(self, session: Session, crew_id: int, assignment_id: int) -> None:
        sim = self.crews[crew_id]
        if sim.current != assignment_id:
            return
        self.act(session, sim, assignment_id, "done")
        sim.current = None
        self.next_job(session, sim)

    # --- injects ----------------------------------------------------------------------------

    def breakdown(self, session: Session, name: str, for_h: float | None) -> None:
        """A crew's vehicle breaks down: it goes off duty, declines what it has not started,
        finishes a job it is already on scene at, and a job it was driving to is handed to
        the best other crew (or left stranded when none can take it)."""
        sim = self.by_name.get(name)
        if sim is None or sim.broken:
            return
        now = self.clock.now()
        sim.broken = True
        under_way: list[int] = []
        on_scene = False
        with session.begin_nested():
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
                elif a.status == AssignmentStatus.ON_SCENE and a.id == sim.current:
                    on_scene = True
        for incident_id in under_way:
            self._hand_over(session, incident_id, now)
        sim.queue.clear()
        if not on_scene:
            sim.current = None
            self.stop_busy(sim)
        if for_h is not None:
            self.schedule(now + timedelta(hours=for_h), "repair", sim.crew_id)

    def _hand_over(self, session: Session, incident_id: int, now: datetime) -> None:
        try:
            with session.begin_nested():
                _, ranked = recommend_crews(
                    session, incident_id, now=now, travel=self.travel, stale_after=STALE_AFTER
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
                    travel=self.travel,
                    stale_after=STALE_AFTER,
                    eta_s=best.eta_s,
                    travel_model=best.travel_model,
                )
        except FieldOpsError as exc:
            log.debug("incident %s stranded by the breakdown: %s", incident_id, exc)
            self.stranded.append(incident_id)

    def repair(self, session: Session, crew_id: int) -> None:
        sim = self.crews[crew_id]
        sim.broken = False
        with session.begin_nested():
            crew = session.get(Crew, crew_id)
            assert crew is not None
            crew.status = CrewStatus.AVAILABLE
            refresh_crew_status(session, crew)

    def handlers(self) -> dict[str, Callable[..., Any]]:
        return {
            "respond": self.respond,
            "arrive": self.arrive,
            "done": self.done,
            "repair": self.repair,
        }
