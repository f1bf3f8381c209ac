"""Planning incidents intake has just opened, many at a time: their deadlines and ladder
steps in one pass, without a query or a flush per incident.

An incident just opened has no assignment, no steps and no snooze yet, so planning it
reduces to the policy's rule, the emergency factor and the ladder. ``plan_incident``
does the same for one incident that may have all of those."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from fieldops.emergencies.models import Emergency
from fieldops.escalation.policy import Anchors, Policy, plan_steps
from fieldops.escalation.service import (
    MET,
    deadline_factor,
    planned_step,
    rule_for,
    set_deadlines,
)
from fieldops.incidents.models import Incident, IncidentStatus


@dataclass(frozen=True)
class Opened:
    incident: Incident  # flushed: it has its id
    now: datetime
    around: Sequence[Emergency]  # the active emergencies holding it


def plan_opened(session: Session, opened: Sequence[Opened], *, policy: Policy | None) -> None:
    """Set the deadlines of freshly opened incidents and add their planned steps to the
    session (the caller flushes once for all of them). Nothing happens without a policy."""
    if policy is None:
        return
    for item in opened:
        incident = item.incident
        rule = rule_for(session, incident, policy, now=item.now, around=item.around)
        if rule is None:
            continue
        anchors = Anchors(opened_at=incident.opened_at, assigned_at=None, assignment_id=None)
        factor = deadline_factor(session, incident, now=item.now)
        set_deadlines(incident, rule, anchors, factor=factor)
        met = MET[IncidentStatus(incident.status)]
        session.add_all(
            planned_step(incident, plan, rule, now=item.now)
            for plan in plan_steps(rule, anchors, factor=factor, met=met)
        )
