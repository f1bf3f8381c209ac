"""What each escalation step does, a tick at a time. Each action returns, in words, what
it did.

A tick may fire a thousand steps, so the actions work on the tick as a whole: what they
read (assignments, crews, districts, the ranking of crews) is fetched once for every due
step, and what they write (outbox messages, the incidents' "escalated" events) is gathered
and written with one statement each when the tick ends. The actions that change an
incident's plan go through the same services a dispatcher's change goes through: a raised
priority is written as it fires, new crews are written together with the tick's other
reassignments (``fieldops.escalation.reassigning``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import shapely
from geoalchemy2.shape import to_shape
from sqlalchemy.orm import Session

from fieldops.crews.repo import crew_names as crew_names_of
from fieldops.dispatch.models import Assignment
from fieldops.dispatch.ranking import CrewState, rank_crews
from fieldops.dispatch.repo import active_assignments
from fieldops.dispatch.roster import crew_states, skills_by_service
from fieldops.dispatch.service import Dispatch, TravelModel, assign_crew
from fieldops.districts.repo import district_names, list_districts
from fieldops.errors import Conflict
from fieldops.escalation.models import EscalationStep
from fieldops.escalation.policy import Action
from fieldops.escalation.reassigning import PendingReassignments, Reassignment
from fieldops.geo.routing import Travel
from fieldops.incidents.models import Incident, IncidentStatus
from fieldops.incidents.repo import add_events
from fieldops.incidents.service import IncidentChange, update_incident
from fieldops.notifications.service import Message, Outbox, enqueue_many

ACTOR = "escalation"
# Actions that change the incident (and re-plan it) as they run.
CHANGES_INCIDENT = frozenset({Action.RAISE_PRIORITY, Action.REASSIGN})
NEEDS_ASSIGNMENT = frozenset({Action.REMIND_CREW, Action.REASSIGN})


@dataclass(frozen=True)
class EscalationActions:
    """The escalation ladder's actions, bound to a travel model and an outbox."""

    travel: TravelModel
    stale_after: timedelta
    outbox: Outbox
    # False: each reassignment written as its step fires (what the tick's batch of them
    # must leave all the same; see ``fieldops.escalation.reassigning``).
    batch_reassignments: bool = True
    # District id -> neighbouring districts' (code, name); districts rarely change.
    _neighbours: dict[int, list[tuple[str, str]]] = field(default_factory=dict, compare=False)
    # District id -> (code, name), without loading boundaries tick after tick.
    _districts: dict[int, tuple[str, str]] = field(default_factory=dict, compare=False)

    def begin(
        self, session: Session, due: Sequence[tuple[Incident, EscalationStep]], *, now: datetime
    ) -> TickActions:
        """Fetch what the due steps' actions need: a query or two per kind of action."""
        actions = {Action(step.action) for _, step in due}
        named = actions & {Action.NOTIFY_SUPERVISOR, Action.REQUEST_MUTUAL_AID}
        if named and not self._districts:
            self._districts.update(
                {d_id: (code, name) for d_id, code, name in district_names(session)}
            )
        if Action.REQUEST_MUTUAL_AID in actions and not self._neighbours:
            self._neighbours.update(neighbouring_districts(session))
        active = active_assignments(
            session, [i.id for i, step in due if Action(step.action) in NEEDS_ASSIGNMENT]
        )
        crew_names = (
            crew_names_of(session, [a.crew_id for a in active.values()])
            if Action.REMIND_CREW in actions
            else {}
        )
        ranking = None
        if Action.REASSIGN in actions:
            to_reassign = {i.id: i for i, step in due if step.action == Action.REASSIGN}
            ranking = CrewRanking.of(
                session,
                list(to_reassign.values()),
                now=now,
                travel=self.travel,
                stale_after=self.stale_after,
            )
        return TickActions(self, session, now, active, crew_names, ranking)

    def district(self, district_id: int) -> tuple[str, str]:
        """(code, name) of a district (loaded by ``begin``)."""
        return self._districts.get(district_id, (str(district_id), "?"))

    def neighbours(self, district_id: int) -> list[tuple[str, str]]:
        return self._neighbours.get(district_id, [])


@dataclass
class CrewRanking:
    """Every crew's state and its travel to each incident a tick may reassign, found once
    for the tick (one crew query, one travel matrix) instead of once per reassignment;
    job counts are kept up to date as the tick moves crews."""

    crews: list[CrewState]
    skills: dict[str, frozenset[str]]  # service code -> skills it needs
    travel: dict[int, Travel]  # incident id -> travel from each crew, aligned with crews

    @classmethod
    def of(
        cls,
        session: Session,
        incidents: Sequence[Incident],
        *,
        now: datetime,
        travel: TravelModel,
        stale_after: timedelta,
    ) -> CrewRanking:
        crews = crew_states(session, now=now, stale_after=stale_after)
        skills = skills_by_service(session)
        if not crews or not incidents:
            return cls(crews, skills, {})
        rows = travel.travel_matrix(
            [c.lon for c in crews],
            [c.lat for c in crews],
            [i.lon for i in incidents],
            [i.lat for i in incidents],
        )
        return cls(crews, skills, {i.id: row for i, row in zip(incidents, rows, strict=True)})

    def moved(self, crew_id: int, jobs: int) -> None:
        """The crew took (+1) or left (-1) a job in this tick."""
        for n, crew in enumerate(self.crews):
            if crew.crew_id == crew_id:
                self.crews[n] = replace(crew, active_jobs=crew.active_jobs + jobs)


class TickActions:
    """The actions of one tick: each step fired in deadline order, the tick's messages,
    events and reassignments written together (by ``finish`` at the latest)."""

    def __init__(
        self,
        actions: EscalationActions,
        session: Session,
        now: datetime,
        active: dict[int, Assignment],
        crew_names: dict[int, str],
        ranking: CrewRanking | None,
    ) -> None:
        self.actions = actions
        self.session = session
        self.now = now
        self.active = active  # incident id -> its active assignment, kept up to date
        self.crew_names = crew_names
        self.ranking = ranking
        self.messages: list[Message] = []
        self.events: list[dict[str, object]] = []
        self._logged: set[int] = set()  # incidents with events in self.events
        self.pending = PendingReassignments(
            session,
            actor=ACTOR,
            now=now,
            travel=actions.travel,
            stale_after=actions.stale_after,
            skills_by_service=ranking.skills if ranking is not None else {},
        )
        self.refused: dict[int, str] = {}  # step id -> reason, reassignments refused late
        self._run: dict[Action, Callable[[Incident, EscalationStep], str]] = {
            Action.REMIND_CREW: self.remind_crew,
            Action.REASSIGN: self.reassign,
            Action.NOTIFY_SUPERVISOR: self.notify_supervisor,
            Action.RAISE_PRIORITY: self.raise_priority,
            Action.REQUEST_MUTUAL_AID: self.request_mutual_aid,
        }

    def fire(self, incident: Incident, step: EscalationStep) -> str:
        action = Action(step.action)
        if action in CHANGES_INCIDENT and incident.id in self._logged:
            # The change's own events must follow this incident's earlier escalations.
            self._write_events()
        what = self._run[action](incident, step)
        self.events.append(
            {
                "incident_id": incident.id,
                "at": self.now,
                "actor": ACTOR,
                "kind": "escalated",
                "data": {
                    "step": step.key,
                    "action": step.action,
                    "deadline": step.deadline,
                    "did": what,
                },
            }
        )
        self._logged.add(incident.id)
        return what

    def catch_up(self, incident: Incident) -> None:
        """Before the incident's next step is judged: what earlier steps of the tick
        decided for it is written (and it is re-planned)."""
        if self.pending.holds(incident.id):
            self._write_reassignments()

    def finish(self) -> dict[int, str]:
        self._write_reassignments()
        enqueue_many(self.session, self.actions.outbox, self.messages, now=self.now)
        self.messages.clear()
        self._write_events()
        refused, self.refused = self.refused, {}
        return refused

    def _write_reassignments(self) -> None:
        written, refused = self.pending.write()
        self.active.update(written)
        self.refused.update(refused)

    def _write_events(self) -> None:
        self._write_reassignments()  # their events come before the escalations after them
        add_events(self.session, self.events)
        self.events.clear()
        self._logged.clear()

    def _notify(
        self, recipient: str, incident: Incident, step: EscalationStep, subject: str
    ) -> None:
        self.messages.append(
            Message(
                recipient=recipient,
                dedupe_key=f"escalation:{incident.id}:{step.key}",
                subject=subject,
                payload={
                    "incident_id": incident.id,
                    "service_code": incident.service_code,
                    "priority": incident.priority,
                    "status": str(incident.status),
                    "step": step.key,
                    "lon": incident.lon,
                    "lat": incident.lat,
                },
            )
        )

    def remind_crew(self, incident: Incident, step: EscalationStep) -> str:
        current = self.active.get(incident.id)
        if current is None:
            return "no crew assigned to remind"
        if current.crew_id not in self.crew_names:  # a crew the tick itself assigned
            self.crew_names.update(crew_names_of(self.session, [current.crew_id]))
        name = self.crew_names.get(current.crew_id, str(current.crew_id))
        self._notify(
            f"crew:{current.crew_id}",
            incident,
            step,
            f"Reminder: acknowledge incident {incident.id} ({incident.service_code})",
        )
        return f"reminded crew {name} to acknowledge"

    def reassign(self, incident: Incident, step: EscalationStep) -> str:
        ranking = self.ranking
        assert ranking is not None, "begin() ranks crews when a reassign step is due"
        current = self.active.get(incident.id)
        ranked = (
            rank_crews(
                ranking.crews,
                ranking.travel[incident.id],
                skills=ranking.skills[incident.service_code],
                district_id=incident.district_id,
                now=self.now,
                limit=10,
            )
            if ranking.crews
            else []
        )
        others = [r for r in ranked if current is None or r.crew_id != current.crew_id]
        if not others:
            return "no other crew can take it now (skills, shift or capacity)"
        best = others[0]
        before = f"from crew {current.crew_id} " if current else ""
        said = f"reassigned {before}to {best.name} (ETA {best.eta_s / 60:.0f} min)"
        if (
            self.actions.batch_reassignments
            and current is not None
            and incident.status == IncidentStatus.ASSIGNED  # and stays so: no status change
            and not self.pending.holds(incident.id)
        ):
            # Written with the tick's other reassignments (``fieldops.escalation.reassigning``).
            dispatch = Dispatch(incident.id, best.crew_id, best.eta_s, best.travel_model)
            self.pending.add(Reassignment(step.id, incident, dispatch, current))
        else:
            self._write_reassignments()
            try:
                self.active[incident.id] = assign_crew(
                    self.session,
                    incident.id,
                    best.crew_id,
                    actor=ACTOR,
                    now=self.now,
                    travel=self.actions.travel,
                    stale_after=self.actions.stale_after,
                    eta_s=best.eta_s,
                    travel_model=best.travel_model,
                    skills_by_service=ranking.skills,
                )
            except Conflict as exc:
                return f"could not reassign: {exc.detail}"
        ranking.moved(best.crew_id, +1)
        if current is not None:
            ranking.moved(current.crew_id, -1)
        return said

    def notify_supervisor(self, incident: Incident, step: EscalationStep) -> str:
        code, name = self.actions.district(incident.district_id)
        self._notify(
            f"supervisor:{code}",
            incident,
            step,
            f"Incident {incident.id} ({incident.service_code}, priority {incident.priority}) "
            f"missed its {step.deadline} deadline",
        )
        return f"notified the supervisor of {name}"

    def raise_priority(self, incident: Incident, step: EscalationStep) -> str:
        if incident.priority <= 1:
            return "priority already at the top (1)"
        before = incident.priority
        self._write_reassignments()  # written before this change, as one at a time would be
        update_incident(
            self.session,
            incident.id,
            IncidentChange(priority=before - 1),
            actor=ACTOR,
            now=self.now,
        )
        return f"priority raised from {before} to {before - 1}"

    def request_mutual_aid(self, incident: Incident, step: EscalationStep) -> str:
        _code, home = self.actions.district(incident.district_id)
        neighbours = self.actions.neighbours(incident.district_id)
        for code, _name in neighbours:
            self._notify(
                f"supervisor:{code}",
                incident,
                step,
                f"Mutual aid requested by {home} for incident "
                f"{incident.id} ({incident.service_code})",
            )
        names = ", ".join(name for _, name in neighbours) or "nobody (no neighbouring district)"
        return f"asked {names} for mutual aid"


def neighbouring_districts(session: Session) -> dict[int, list[tuple[str, str]]]:
    """Districts that share a border (within ~10 m), found with one spatial-index query."""
    districts = list(list_districts(session))
    shapes = [to_shape(d.geom) for d in districts]
    tree = shapely.STRtree(shapes)
    left, right = tree.query([s.buffer(1e-4) for s in shapes], predicate="intersects")
    found: dict[int, list[tuple[str, str]]] = {d.id: [] for d in districts}
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i != j:
            found[districts[i].id].append((districts[j].code, districts[j].name))
    return found
