"""Escalation use cases: load the policy, plan an incident's deadlines and steps, fire
what is due exactly once, and explain every step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from fieldops.dispatch.models import Assignment
from fieldops.dispatch.repo import active_assignment
from fieldops.emergencies.models import Emergency
from fieldops.emergencies.repo import notice_stretch
from fieldops.escalation import repo
from fieldops.escalation.models import EscalationStep, PolicyVersion, StepStatus
from fieldops.escalation.policy import Anchors, Deadline, Policy, Rule, deadlines, plan_steps
from fieldops.incidents.models import Incident, IncidentStatus

S = IncidentStatus
# Which deadlines an incident in each status has already met.
MET: dict[IncidentStatus, frozenset[Deadline]] = {
    S.OPEN: frozenset(),
    S.ASSIGNED: frozenset({Deadline.DISPATCH}),
    S.ACKNOWLEDGED: frozenset({Deadline.DISPATCH, Deadline.ACKNOWLEDGE}),
    S.EN_ROUTE: frozenset({Deadline.DISPATCH, Deadline.ACKNOWLEDGE}),
    S.ON_SCENE: frozenset({Deadline.DISPATCH, Deadline.ACKNOWLEDGE, Deadline.ARRIVE}),
    S.RESOLVED: frozenset(Deadline),
    S.CANCELLED: frozenset(Deadline),
}
MET_WORDS = {
    Deadline.DISPATCH: "dispatched",
    Deadline.ACKNOWLEDGE: "acknowledged",
    Deadline.ARRIVE: "crew on scene",
    Deadline.RESOLVE: "closed",
}

_parsed: dict[int, Policy] = {}


def load_policy(session: Session, policy: Policy, *, source: str, now: datetime) -> PolicyVersion:
    """Put ``policy`` in force for incidents planned from now on."""
    version = PolicyVersion(
        loaded_at=now, source=source, document=[r.model_dump(mode="json") for r in policy.rules]
    )
    session.add(version)
    session.flush()
    return version


def policy_in_force(session: Session) -> Policy | None:
    """The newest loaded policy (each version is parsed once per process)."""
    newest = repo.latest_policy_id(session)
    if newest is None:
        return None
    if newest not in _parsed:
        row = repo.latest_policy(session)
        assert row is not None
        _parsed[row.id] = Policy(tuple(Rule.model_validate(r) for r in row.document))
    return _parsed[newest]


def _clock(instant: datetime) -> str:
    return f"{instant:%H:%M:%S}"


def _met_reason(deadline: Deadline, deadline_at: datetime, now: datetime) -> str:
    margin = (deadline_at - now).total_seconds()
    when = f"{abs(margin):.0f} s {'before' if margin >= 0 else 'after'} the deadline"
    return f"{MET_WORDS[deadline]} at {_clock(now)}Z, {when}"


def deadline_factor(session: Session, incident: Incident, *, now: datetime) -> float:
    """Windows are multiplied by the incident's emergency factor while it is active."""
    if incident.emergency_id is None:
        return 1.0
    emergency = session.get(Emergency, incident.emergency_id)
    if emergency is None or (emergency.ended_at is not None and emergency.ended_at <= now):
        return 1.0
    return emergency.deadline_factor


def plan_incident(
    session: Session, incident: Incident, *, now: datetime, fresh: bool = False
) -> None:
    """(Re)compute the incident's deadlines and bring its planned steps in line: new
    steps planned, met or obsolete ones cancelled with the reason, moved ones re-timed.
    Safe to call after any change; does nothing without a policy. ``fresh``: the
    incident was opened in this transaction, so it has no assignment and no steps yet
    (intake's hot path skips looking for them)."""
    policy = policy_in_force(session)
    rule = policy.rule_for(incident.service_code, incident.priority) if policy else None
    # A non-critical incident under an emergency's service notice is expected later.
    stretch = notice_stretch(session, incident, now=now)
    if rule is not None and stretch != 1.0:
        rule = rule.model_copy(update={"resolve_s": round(rule.resolve_s * stretch)})
    status = IncidentStatus(incident.status)
    met = MET[status]
    current: Assignment | None = None if fresh else active_assignment(session, incident.id)
    anchors = Anchors(
        opened_at=incident.opened_at,
        assigned_at=current.assigned_at if current else None,
        assignment_id=current.id if current else None,
    )
    factor = deadline_factor(session, incident, now=now)
    wanted = {s.key: s for s in plan_steps(rule, anchors, factor=factor, met=met)} if rule else {}
    if rule is not None:
        found = deadlines(rule, anchors, factor=factor)
        incident.dispatch_due_at = found.get(Deadline.DISPATCH)
        incident.acknowledge_due_at = found.get(Deadline.ACKNOWLEDGE)
        incident.arrive_due_at = found.get(Deadline.ARRIVE)
        incident.resolve_due_at = found.get(Deadline.RESOLVE)
    for step in () if fresh else repo.steps_of(session, incident.id):
        if step.status != StepStatus.PLANNED:
            wanted.pop(step.key, None)  # fired, cancelled or skipped: never again
            continue
        plan = wanted.pop(step.key, None)
        if plan is None:
            deadline = Deadline(step.deadline)
            if deadline in met:
                reason = _met_reason(deadline, step.deadline_at, now)
            elif deadline == Deadline.ACKNOWLEDGE:
                reason = f"the assignment ended at {_clock(now)}Z (reassigned or declined)"
            else:
                reason = f"replanned at {_clock(now)}Z: priority or rule changed"
            _settle(step, StepStatus.CANCELLED, reason, now)
        else:
            due = plan.due_at
            if incident.snoozed_until is not None and due < incident.snoozed_until:
                due = incident.snoozed_until
            step.due_at, step.deadline_at = due, plan.deadline_at
    for plan in wanted.values():
        due = plan.due_at
        if incident.snoozed_until is not None and due < incident.snoozed_until:
            due = incident.snoozed_until
        session.add(
            EscalationStep(
                incident_id=incident.id,
                key=plan.key,
                deadline=str(plan.deadline),
                action=str(plan.action),
                deadline_at=plan.deadline_at,
                due_at=due,
                status=StepStatus.PLANNED,
                reason=f"planned by rule {rule.name!r}" if rule else "",
                planned_at=now,
                settled_at=None,
            )
        )
    session.flush()


def _settle(step: EscalationStep, status: StepStatus, reason: str, now: datetime) -> None:
    step.status = status
    step.reason = reason
    step.settled_at = now


@dataclass(frozen=True)
class Fired:
    step_id: int
    incident_id: int
    action: str
    status: StepStatus
    reason: str


# An action does its work and returns what it did, in words, for the trace.
ActionRunner = Callable[[Session, Incident, EscalationStep, datetime], str]


def fire_due(
    session: Session, *, now: datetime, run_action: ActionRunner, limit: int = 1000
) -> list[Fired]:
    """Fire every planned step due at ``now`` (oldest deadline first), each exactly once.

    A step whose deadline was met meanwhile is skipped with the reason; the caller
    commits, which is what makes the claim and the action one atomic change.
    """
    done: list[Fired] = []
    steps = repo.claim_due(session, now=now, limit=limit)
    # One query for every incident the steps touch, held for the whole tick.
    incidents = {
        i.id: i
        for i in session.scalars(
            sa.select(Incident).where(Incident.id.in_({s.incident_id for s in steps}))
        )
    }
    for step in steps:
        incident = incidents[step.incident_id]
        deadline = Deadline(step.deadline)
        if deadline in MET[IncidentStatus(incident.status)]:
            _settle(step, StepStatus.SKIPPED, f"{MET_WORDS[deadline]} before the step came up", now)
        else:
            _settle(step, StepStatus.FIRED, run_action(session, incident, step, now), now)
        done.append(Fired(step.id, step.incident_id, step.action, step.status, step.reason))
    session.flush()
    return done


def snooze(
    session: Session, incident: Incident, *, until: datetime, actor: str, now: datetime
) -> int:
    """Hold every planned step of the incident until ``until``; returns how many moved.

    Later re-planning keeps the snooze: a step's due time is never pulled back before it.
    """
    if until <= now:
        raise ValueError("a snooze ends in the future")
    moved = 0
    for step in repo.steps_of(session, incident.id):
        if step.status == StepStatus.PLANNED and step.due_at < until:
            step.due_at = until
            step.reason = f"snoozed by {actor} until {_clock(until)}Z"
            moved += 1
    incident.snoozed_until = until
    session.flush()
    return moved
