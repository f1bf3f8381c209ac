"""What each escalation step does. Each action returns, in words, what it did."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import shapely
from geoalchemy2.shape import to_shape
from sqlalchemy.orm import Session

from fieldops.crews.repo import get_crew
from fieldops.dispatch.repo import active_assignment
from fieldops.dispatch.service import TravelModel, assign_crew, recommend_crews
from fieldops.districts.repo import district_names, list_districts
from fieldops.errors import Conflict
from fieldops.escalation.models import EscalationStep
from fieldops.escalation.policy import Action
from fieldops.incidents.models import Incident
from fieldops.incidents.service import IncidentChange, record_event, update_incident
from fieldops.notifications.service import Outbox, enqueue

ACTOR = "escalation"


@dataclass(frozen=True)
class EscalationActions:
    """The escalation ladder's actions, bound to a travel model and an outbox."""

    travel: TravelModel
    stale_after: timedelta
    outbox: Outbox
    # District id -> neighbouring districts' (code, name); districts rarely change.
    _neighbours: dict[int, list[tuple[str, str]]] = field(default_factory=dict, compare=False)
    # District id -> (code, name), without loading boundaries step after step.
    _districts: dict[int, tuple[str, str]] = field(default_factory=dict, compare=False)

    def __call__(
        self, session: Session, incident: Incident, step: EscalationStep, now: datetime
    ) -> str:
        action = Action(step.action)
        what = getattr(self, action.value)(session, incident, step, now)
        record_event(
            session,
            incident,
            kind="escalated",
            actor=ACTOR,
            now=now,
            data={"step": step.key, "action": step.action, "deadline": step.deadline, "did": what},
        )
        return what

    def _notify(
        self,
        session: Session,
        recipient: str,
        incident: Incident,
        step: EscalationStep,
        subject: str,
        now: datetime,
    ) -> bool:
        return enqueue(
            session,
            self.outbox,
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
            now=now,
        )

    def remind_crew(
        self, session: Session, incident: Incident, step: EscalationStep, now: datetime
    ) -> str:
        current = active_assignment(session, incident.id)
        if current is None:
            return "no crew assigned to remind"
        crew = get_crew(session, current.crew_id)
        name = crew.name if crew else str(current.crew_id)
        self._notify(
            session,
            f"crew:{current.crew_id}",
            incident,
            step,
            f"Reminder: acknowledge incident {incident.id} ({incident.service_code})",
            now,
        )
        return f"reminded crew {name} to acknowledge"

    def reassign(
        self, session: Session, incident: Incident, step: EscalationStep, now: datetime
    ) -> str:
        current = active_assignment(session, incident.id)
        _, ranked = recommend_crews(
            session,
            incident.id,
            now=now,
            travel=self.travel,
            stale_after=self.stale_after,
            limit=10,
        )
        others = [r for r in ranked if current is None or r.crew_id != current.crew_id]
        if not others:
            return "no other crew can take it now (skills, shift or capacity)"
        best = others[0]
        try:
            assign_crew(
                session,
                incident.id,
                best.crew_id,
                actor=ACTOR,
                now=now,
                travel=self.travel,
                stale_after=self.stale_after,
                eta_s=best.eta_s,
                travel_model=best.travel_model,
            )
        except Conflict as exc:
            return f"could not reassign: {exc.detail}"
        before = f"from crew {current.crew_id} " if current else ""
        return f"reassigned {before}to {best.name} (ETA {best.eta_s / 60:.0f} min)"

    def _district(self, session: Session, incident: Incident) -> tuple[str, str]:
        """(code, name) of the incident's district."""
        if not self._districts:
            self._districts.update(
                {d_id: (code, name) for d_id, code, name in district_names(session)}
            )
        return self._districts.get(incident.district_id, (str(incident.district_id), "?"))

    def notify_supervisor(
        self, session: Session, incident: Incident, step: EscalationStep, now: datetime
    ) -> str:
        code, name = self._district(session, incident)
        self._notify(
            session,
            f"supervisor:{code}",
            incident,
            step,
            f"Incident {incident.id} ({incident.service_code}, priority {incident.priority}) "
            f"missed its {step.deadline} deadline",
            now,
        )
        return f"notified the supervisor of {name}"

    def raise_priority(
        self, session: Session, incident: Incident, step: EscalationStep, now: datetime
    ) -> str:
        if incident.priority <= 1:
            return "priority already at the top (1)"
        before = incident.priority
        update_incident(
            session, incident.id, IncidentChange(priority=before - 1), actor=ACTOR, now=now
        )
        return f"priority raised from {before} to {before - 1}"

    def request_mutual_aid(
        self, session: Session, incident: Incident, step: EscalationStep, now: datetime
    ) -> str:
        if not self._neighbours:
            self._neighbours.update(neighbouring_districts(session))
        _code, home = self._district(session, incident)
        neighbours = self._neighbours.get(incident.district_id, [])
        for code, _name in neighbours:
            self._notify(
                session,
                f"supervisor:{code}",
                incident,
                step,
                f"Mutual aid requested by {home} for incident "
                f"{incident.id} ({incident.service_code})",
                now,
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
