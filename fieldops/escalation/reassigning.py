"""The reassignments of one escalation tick, written together.

A storm's tick may hand dozens of incidents to other crews. Each reassignment is decided
when its step fires (on the tick's ranking, which follows the crews the tick moves), but
the reassignments are written together, with one ``assign_crews`` call and one planning
pass, at the first moment their writes could be told from writes made one at a time:
before the tick writes its escalation events, before an action that changes an incident
itself (a raised priority), before another step of an incident with a reassignment
pending is judged, and when the tick ends. Rows, ids, log order and plans are then those
of the reassignments written one by one (``tests/integration/test_reassign_batch.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from fieldops.dispatch.models import Assignment
from fieldops.dispatch.service import Dispatch, TravelModel, assign_crew, assign_crews
from fieldops.errors import Conflict
from fieldops.escalation.service import plan_incidents
from fieldops.incidents.models import Incident

# (incident id -> its new assignment, step id -> why its reassignment was refused)
Written = tuple[dict[int, Assignment], dict[int, str]]


@dataclass(frozen=True)
class Reassignment:
    """The crew a step chose for an incident whose crew it relieves."""

    step_id: int
    incident: Incident
    dispatch: Dispatch
    relieved: Assignment


class PendingReassignments:
    """Reassignments decided in this tick and not yet written."""

    def __init__(
        self,
        session: Session,
        *,
        actor: str,
        now: datetime,
        travel: TravelModel,
        stale_after: timedelta,
        skills_by_service: dict[str, frozenset[str]],
    ) -> None:
        self.session = session
        self.actor = actor
        self.now = now
        self.travel = travel
        self.stale_after = stale_after
        self.skills_by_service = skills_by_service
        self._items: list[Reassignment] = []
        self._incidents: set[int] = set()

    def add(self, item: Reassignment) -> None:
        if item.incident.id in self._incidents:
            raise ValueError(f"incident {item.incident.id} already has a reassignment pending")
        self._items.append(item)
        self._incidents.add(item.incident.id)

    def holds(self, incident_id: int) -> bool:
        return incident_id in self._incidents

    def write(self) -> Written:
        """Write every pending reassignment, in the order decided: (incident id -> its new
        assignment, step id -> why a reassignment was refused). A refusal can only come
        from another process changing a crew meanwhile; then each is written alone, as
        one at a time would have, and the refused ones keep their crew."""
        items, self._items, self._incidents = self._items, [], set()
        if not items:
            return {}, {}
        try:
            done = assign_crews(
                self.session,
                [r.dispatch for r in items],
                actor=self.actor,
                now=self.now,
                travel=self.travel,
                stale_after=self.stale_after,
                skills_by_service=self.skills_by_service,
            )
        except Conflict:
            # Every check comes before the first write: nothing was written.
            return self._one_by_one(items)
        made = {i.id: a for a, i in done if i is not None}
        planned = [i for _, i in done if i is not None]
        plan_incidents(self.session, planned, now=self.now, assigned=made)
        return {r.incident.id: a for r, (a, _) in zip(items, done, strict=True)}, {}

    def _one_by_one(self, items: list[Reassignment]) -> Written:
        written: dict[int, Assignment] = {}
        refused: dict[int, str] = {}
        for r in items:
            try:
                written[r.incident.id] = assign_crew(
                    self.session,
                    r.incident.id,
                    r.dispatch.crew_id,
                    actor=self.actor,
                    now=self.now,
                    travel=self.travel,
                    stale_after=self.stale_after,
                    eta_s=r.dispatch.eta_s,
                    travel_model=r.dispatch.travel_model,
                    skills_by_service=self.skills_by_service,
                )
            except Conflict as exc:
                refused[r.step_id] = f"could not reassign: {exc.detail}"
                written[r.incident.id] = r.relieved
        return written, refused
