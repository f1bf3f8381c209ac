"""The drill's simulated crews: they answer assignments, drive, work and break down, each step
through the real crew service on the session the runner hands in.

A crew decides on what it knows of its jobs: the fleet reads its crews' active assignments at
the start of every drain (what dispatch and escalation changed since) and follows its own
steps from there, so it takes no step the service would refuse. The steps go to the crew
service in batches (``act_on_assignments``) when the runner flushes the fleet: before a
report that comes after a finished job nearby (the report must find that incident resolved,
as it would in the city), before an inject, and at the end of the drain.
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
from fieldops.crews.service import Fix, record_fleet_positions
from fieldops.dispatch import repo as dispatch_repo
from fieldops.dispatch.crew_steps import (
    CREW_ACTIONS,
    ENDING,
    CrewStep,
    act_on_assignment,
    act_on_assignments,
)
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
from fieldops.geo.crs import local_metres
from fieldops.incidents.models import Incident

log = logging.getLogger("fieldops.drills")

# Schedules a later step: (when, kind, *args).
Schedule = Callable[..., None]


# An assignment's step by its stored value.
_STEPS = {str(step): step for step in AssignmentStatus}


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
        # The crews' active assignments as their steps so far leave them: id -> (crew, step).
        self.active: dict[int, tuple[int, AssignmentStatus]] = {}
        self.pending: list[CrewStep] = []
        self.fixes: dict[int, list[Fix]] = {}
        self.closing: list[tuple[float, float]] = []  # where pending steps finish jobs
        self.refused = 0  # pending steps the service refused all the same (none expected)

    def _s(self, when: datetime) -> float:
        return (when - self.start).total_seconds()

    # --- new work ---------------------------------------------------------------------------

    def discover(self, session: Session) -> None:
        """Read the crews' active assignments; the new ones (batch, emergency batch,
        escalation) are answered later."""
        now = self.clock.now()
        fresh = [
            assignment_id
            for assignment_id, (_, status) in self._read_active(session).items()
            if status == AssignmentStatus.PENDING and assignment_id not in self.seen
        ]
        for assignment_id, lon, lat, service in self._read_places(session, fresh):
            crew_id = self.active[assignment_id][0]
            self.seen.add(assignment_id)
            self.where[assignment_id] = (lon, lat, service)
            accept = bool(self.rng.uniform() >= self.behaviour.decline_probability)
            delay = float(self.rng.uniform(*self.behaviour.acknowledge_delay_s))
            self.schedule(
                now + timedelta(seconds=round(delay, 1)), "respond", crew_id, assignment_id, accept
            )

    def _read_active(self, session: Session) -> dict[int, tuple[int, AssignmentStatus]]:
        """The fleet's active assignments, by id (in id order): crew and step. Every
        active assignment is read, the fleet's kept in Python: hundreds of crew ids in
        an IN list would cost more than the few other crews' rows."""
        rows = dispatch_repo.every_active_assignment(session)
        crews = self.crews
        step = _STEPS.__getitem__  # hundreds of rows a tick: a lookup, not an enum call
        self.active = {
            assignment_id: (crew_id, step(status))
            for assignment_id, crew_id, status in rows
            if crew_id in crews
        }
        return self.active

    def _read_places(self, session: Session, assignment_ids: list[int]) -> list[Any]:
        """(assignment id, lon, lat, service code) of these assignments' incidents, in
        assignment id order."""
        if not assignment_ids:
            return []
        return list(
            session.execute(
                sa.select(Assignment.id, Incident.lon, Incident.lat, Incident.service_code)
                .join(Incident, Incident.id == Assignment.incident_id)
                .where(Assignment.id.in_(assignment_ids))
                .order_by(Assignment.id)
            ).all()
        )

    # --- a crew's steps ---------------------------------------------------------------------

    def act(self, sim: CrewSim, assignment_id: int, action: str, note: str = "") -> bool:
        """The crew's step, if the job is still its own at a step that allows it (False
        when it was reassigned, withdrawn or closed meanwhile); sent at the next flush."""
        allowed_from, moved_to, _ = CREW_ACTIONS[action]
        held = self.active.get(assignment_id)
        if held is None or held[0] != sim.crew_id or held[1] not in allowed_from:
            log.debug("crew %s: %s on assignment %s not taken", sim.name, action, assignment_id)
            return False
        if action in ENDING:
            del self.active[assignment_id]
        else:
            self.active[assignment_id] = (sim.crew_id, moved_to)
        self.pending.append(CrewStep(assignment_id, sim.crew_id, action, self.clock.now(), note))
        if action == "done":
            lon, lat, _ = self.where[assignment_id]
            self.closing.append((lon, lat))
        return True

    def closes_within(self, lon: float, lat: float, metres: float) -> bool:
        """Whether a pending step finishes a job within ``metres`` of the point: a report
        there could be a duplicate of that job's incident, so it must find it resolved."""
        if not self.closing:
            return False
        lons, lats = zip(*self.closing, strict=True)
        dx_m, dy_m = local_metres(lon, lat, lons, lats)
        return bool(np.any(np.hypot(dx_m, dy_m) <= metres))

    def flush(self, session: Session) -> None:
        """Hand the crews' pending steps and position fixes to the services."""
        steps, self.pending, self.closing = self.pending, [], []
        for step, outcome in zip(steps, act_on_assignments(session, steps), strict=True):
            if isinstance(outcome, FieldOpsError):
                self.refused += 1
                log.warning("crew %s: %s refused: %s", step.crew_id, step.action, outcome)
        fixes, self.fixes = self.fixes, {}
        if fixes:
            newest = max(f.fix_at for crew_fixes in fixes.values() for f in crew_fixes)
            record_fleet_positions(session, fixes, now=newest)

    def respond(self, session: Session, crew_id: int, assignment_id: int, accept: bool) -> None:
        sim = self.crews[crew_id]
        if sim.broken:
            return
        if not accept:
            self.act(sim, assignment_id, "decline", "cannot take it now (simulated)")
            return
        if self.act(sim, assignment_id, "accept"):
            sim.queue.append(assignment_id)
            self.next_job(sim)

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

    def next_job(self, sim: CrewSim) -> None:
        while sim.current is None and sim.queue and not sim.broken:
            assignment_id = sim.queue.pop(0)
            if not self.act(sim, assignment_id, "en_route"):
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
        if not self.act(sim, assignment_id, "on_scene"):
            sim.current = None
            self.next_job(sim)
            return
        lon, lat, service = self.where[assignment_id]
        sim.lon, sim.lat = lon, lat
        now = self.clock.now()
        self.fixes.setdefault(crew_id, []).append(Fix(lon, lat, now))
        low, high = self.behaviour.work_min_by_service.get(service, self.behaviour.work_min)
        work_s = float(self.rng.uniform(low, high)) * 60.0
        self.schedule(now + timedelta(seconds=round(work_s, 1)), "done", crew_id, assignment_id)

    def done(self, session: Session, crew_id: int, assignment_id: int) -> None:
        sim = self.crews[crew_id]
        if sim.current != assignment_id:
            return
        self.act(sim, assignment_id, "done")
        sim.current = None
        self.next_job(sim)

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
        self._read_active(session)  # what the breakdown changed
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
        """What the runner calls for each kind of fleet event (with the drain's session)."""
        return {
            "respond": self.respond,
            "arrive": self.arrive,
            "done": self.done,
            "repair": self.repair,
        }
