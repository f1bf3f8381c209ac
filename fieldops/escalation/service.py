"""Escalation use cases: load the policy, plan an incident's deadlines and steps, fire
what is due exactly once, and explain every step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from fieldops.db.bulk import insert_pending
from fieldops.db.ids import give_ids
from fieldops.dispatch.models import Assignment
from fieldops.dispatch.repo import active_assignment, active_assignments
from fieldops.emergencies.models import Emergency
from fieldops.emergencies.repo import (
    active_emergencies_within,
    emergency_factors,
    holding,
    is_active,
    notice_stretch,
)
from fieldops.escalation import repo
from fieldops.escalation.models import EscalationStep, PolicyVersion, StepStatus
from fieldops.escalation.policy import (
    Anchors,
    Deadline,
    PlannedStep,
    Policy,
    Rule,
    deadlines,
    plan_steps,
)
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
    # A policy loaded in this transaction (perhaps in a savepoint rolled back later) is
    # never answered from the transaction's cache: see ``policy_in_force``.
    session.info[_POLICY_LOADED_IN] = session.get_transaction()
    return version


# session.info keys: the transaction that last loaded a policy; and (transaction, newest
# policy id) as last looked up.
_POLICY_LOADED_IN = "fieldops.escalation.policy_loaded_in"
_NEWEST_POLICY = "fieldops.escalation.newest_policy"


def _newest_policy_id(session: Session) -> int | None:
    """The newest policy id, looked up once per transaction (always, in a transaction that
    loads a policy itself): a policy another transaction loads meanwhile applies from the
    caller's next transaction, as the edges keep their transactions short."""
    transaction = session.get_transaction()
    if transaction is not None and session.info.get(_POLICY_LOADED_IN) is not transaction:
        cached = session.info.get(_NEWEST_POLICY)
        if cached is not None and cached[0] is transaction:
            return cast(int | None, cached[1])
    newest = repo.latest_policy_id(session)
    session.info[_NEWEST_POLICY] = (session.get_transaction(), newest)
    return newest


def policy_in_force(session: Session) -> Policy | None:
    """The newest loaded policy (each version is parsed once per process)."""
    newest = _newest_policy_id(session)
    if newest is None:
        return None
    if newest not in _parsed:
        row = session.get(PolicyVersion, newest)
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
    if emergency is None:
        return 1.0
    return _factor_at(emergency.ended_at, emergency.deadline_factor, now)


def _factor_at(ended_at: datetime | None, factor: float, now: datetime) -> float:
    return 1.0 if ended_at is not None and ended_at <= now else factor


def rule_for(
    session: Session,
    incident: Incident,
    policy: Policy | None,
    *,
    now: datetime,
    around: Sequence[Emergency] | None = None,
) -> Rule | None:
    """The policy's rule for the incident, its resolve window stretched while it carries
    an emergency's service notice (a non-critical incident is expected later).
    ``around``: the active emergencies holding the incident, when the caller has them."""
    rule = policy.rule_for(incident.service_code, incident.priority) if policy else None
    stretch = notice_stretch(session, incident, now=now, around=around)
    if rule is not None and stretch != 1.0:
        rule = rule.model_copy(update={"resolve_s": round(rule.resolve_s * stretch)})
    return rule


def set_deadlines(incident: Incident, rule: Rule, anchors: Anchors, *, factor: float) -> None:
    """Store the rule's absolute deadlines on the incident."""
    found = deadlines(rule, anchors, factor=factor)
    incident.dispatch_due_at = found.get(Deadline.DISPATCH)
    incident.acknowledge_due_at = found.get(Deadline.ACKNOWLEDGE)
    incident.arrive_due_at = found.get(Deadline.ARRIVE)
    incident.resolve_due_at = found.get(Deadline.RESOLVE)


# New planned steps as plain rows (attribute values), for a batch that writes them
# together (``fieldops.db.bulk.insert_pending``).
StepRows = list[dict[str, Any]]


def planned_step(
    incident: Incident, plan: PlannedStep, rule: Rule | None, *, now: datetime
) -> EscalationStep:
    """A new planned step of the incident; it waits out the incident's snooze."""
    return EscalationStep(**planned_step_row(incident, plan, rule, now=now))


def planned_step_row(
    incident: Incident, plan: PlannedStep, rule: Rule | None, *, now: datetime
) -> dict[str, Any]:
    """``planned_step``'s values, as a plain row."""
    due = plan.due_at
    if incident.snoozed_until is not None and due < incident.snoozed_until:
        due = incident.snoozed_until
    return {
        "incident_id": incident.id,
        "key": plan.key,
        "deadline": str(plan.deadline),
        "action": str(plan.action),
        "deadline_at": plan.deadline_at,
        "due_at": due,
        "status": StepStatus.PLANNED,
        "reason": f"planned by rule {rule.name!r}" if rule else "",
        "planned_at": now,
        "settled_at": None,
    }


def plan_incident(session: Session, incident: Incident, *, now: datetime) -> None:
    """(Re)compute the incident's deadlines and bring its planned steps in line: new
    steps planned, met or obsolete ones cancelled with the reason, moved ones re-timed.
    Safe to call after any change; does nothing without a policy. (Intake plans the
    incidents it opens many at a time: ``fieldops.escalation.opening``.)"""
    replan(
        session,
        incident,
        now=now,
        policy=policy_in_force(session),
        current=active_assignment(session, incident.id),
        steps=repo.steps_of(session, incident.id),
    )
    session.flush()


def plan_incidents(
    session: Session,
    incidents: Sequence[Incident],
    *,
    now: datetime,
    changed_at: Mapping[int, datetime] | None = None,
    assigned: Mapping[int, Assignment] | None = None,
) -> None:
    """``plan_incident`` for many incidents, with a few queries and one flush for all of
    them (a batch dispatch round plans every incident it assigned at once). Their steps
    are read as plain rows (``repo.step_rows_of_incidents``) and the few planning changes
    written with one UPDATE per kind of change, after the flush. (No caller plans inside
    a savepoint: one rolled back would not expire step objects loaded after those
    UPDATEs, as it expires objects it flushed.)
    ``changed_at``: incident id -> the instant it changed, where that is not ``now`` (a
    batch of crews' steps plans each incident as of its own step). ``assigned``: incident
    id -> the assignment the caller has just made, for every incident (the newest active
    one: what would be read)."""
    changed_at = changed_at or {}
    incidents = list({i.id: i for i in incidents}.values())  # each once
    if not incidents:
        return
    ids = [i.id for i in incidents]
    policy = policy_in_force(session)
    current = active_assignments(session, ids) if assigned is None else assigned
    steps = repo.step_rows_of_incidents(session, ids)
    around = _emergencies_around(session, incidents, now=now, changed_at=changed_at)
    # Each incident's emergency (its end and deadline factor), read once for all.
    emergencies = emergency_factors(session, [i.emergency_id for i in incidents if i.emergency_id])
    planned: StepRows = []
    for incident in incidents:
        at = changed_at.get(incident.id, now)
        ended_at, factor = emergencies.get(incident.emergency_id or 0, (None, 1.0))
        replan(
            session,
            incident,
            now=at,
            policy=policy,
            current=current.get(incident.id),
            steps=steps[incident.id],
            around=around.get(incident.id),
            rows=planned,
            factor=_factor_at(ended_at, factor, at),
        )
    _write_new_steps(session, planned)
    session.flush()
    repo.write_step_rows(
        session, [s for found in steps.values() for s in found if isinstance(s, repo.StepRow)]
    )


def _write_new_steps(session: Session, planned: StepRows) -> None:
    """Write the steps planning added as plain rows with one statement, numbered by the
    database in the order planned (the ids ``give_ids`` would give): nothing reads them
    back as objects in the transaction (planning again reads them from the table). With
    anything new in the session (a caller's own, unflushed), they are made objects, given
    their ids and flushed with it instead."""
    if not planned:
        give_ids(session, list(session.new))
    elif not session.new:
        insert_pending(session, keep=(), rows={EscalationStep: planned})
    else:
        session.add_all(EscalationStep(**row) for row in planned)
        give_ids(session, list(session.new))


def _emergencies_around(
    session: Session,
    incidents: Sequence[Incident],
    *,
    now: datetime,
    changed_at: Mapping[int, datetime],
) -> dict[int, list[Emergency]]:
    """The active emergencies holding each incident whose rule they may stretch (one that
    carries a service notice), each as of its own instant, with one query for all."""
    asking = [i for i in incidents if i.emergency_id is None and i.service_notice]
    if not asking:
        return {}
    instants = [changed_at.get(i.id, now) for i in asking]
    known = active_emergencies_within(session, earliest=min(instants), latest=max(instants))
    return {
        i.id: holding([e for e in known if is_active(e, now=at)], i.lon, i.lat)
        for i, at in zip(asking, instants, strict=True)
    }


def replan(
    session: Session,
    incident: Incident,
    *,
    now: datetime,
    policy: Policy | None,
    current: Assignment | None,
    steps: Sequence[EscalationStep | repo.StepRow],
    around: Sequence[Emergency] | None = None,
    rows: StepRows | None = None,
    factor: float | None = None,
) -> None:
    """What ``plan_incident`` does, given its policy, active assignment and steps (and,
    when the caller has them, the active emergencies holding the incident and its
    ``deadline_factor`` at ``now``). Adds to the session (new steps into ``rows`` instead,
    when given); the caller flushes."""
    rule = rule_for(session, incident, policy, now=now, around=around)
    met = MET[IncidentStatus(incident.status)]
    anchors = Anchors(
        opened_at=incident.opened_at,
        assigned_at=current.assigned_at if current else None,
        assignment_id=current.id if current else None,
    )
    if factor is None:
        factor = deadline_factor(session, incident, now=now)
    wanted = {s.key: s for s in plan_steps(rule, anchors, factor=factor, met=met)} if rule else {}
    if rule is not None:
        set_deadlines(incident, rule, anchors, factor=factor)
    for step in steps:
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
    if rows is not None:
        rows.extend(planned_step_row(incident, plan, rule, now=now) for plan in wanted.values())
    else:
        session.add_all(planned_step(incident, plan, rule, now=now) for plan in wanted.values())


def _settle(
    step: EscalationStep | repo.StepRow, status: StepStatus, reason: str, now: datetime
) -> None:
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


class ActionBatch(Protocol):
    """The actions of one tick: fired one by one in deadline order, written together."""

    def catch_up(self, incident: Incident) -> None:
        """Write what earlier steps gathered for this incident, before its next step."""
        ...

    def fire(self, incident: Incident, step: EscalationStep) -> str:
        """Do the step's action (or gather what it writes); returns, in words, what it did."""
        ...

    def finish(self) -> Mapping[int, str]:
        """Write what the fired actions gathered, with a few statements for the tick;
        returns, by step id, what a gathered action turned out to do instead (rare)."""
        ...


class ActionRunner(Protocol):
    """Runs the escalation steps' actions, a tick at a time."""

    def begin(
        self, session: Session, due: Sequence[tuple[Incident, EscalationStep]], *, now: datetime
    ) -> ActionBatch:
        """Fetch, in bulk, what the actions of these claimed steps need."""
        ...


def fire_due(
    session: Session, *, now: datetime, run_action: ActionRunner, limit: int = 1000
) -> list[Fired]:
    """Fire every planned step due at ``now`` (oldest deadline first), each exactly once.

    A step whose deadline was met meanwhile is skipped with the reason; the caller
    commits, which is what makes the claim and the action one atomic change. The
    outcomes of all the steps are written together, by one statement.
    """
    steps = repo.claim_due(session, now=now, limit=limit)
    if not steps:
        return []
    # One query for every incident the steps touch, held for the whole tick.
    incidents = {
        i.id: i
        for i in session.scalars(
            sa.select(Incident).where(Incident.id.in_({s.incident_id for s in steps}))
        )
    }
    batch = run_action.begin(session, [(incidents[s.incident_id], s) for s in steps], now=now)
    done: list[Fired] = []
    for step in steps:
        incident = incidents[step.incident_id]
        batch.catch_up(incident)
        deadline = Deadline(step.deadline)
        # An earlier step of this tick may have moved the incident on (a new crew).
        if deadline in MET[IncidentStatus(incident.status)]:
            _mark(step, StepStatus.SKIPPED, f"{MET_WORDS[deadline]} before the step came up", now)
        else:
            # Fired before its action runs: a re-plan that the action causes (a raised
            # priority, a new crew) must neither cancel nor re-time a step that fired.
            set_committed_value(step, "status", StepStatus.FIRED)
            _mark(step, StepStatus.FIRED, batch.fire(incident, step), now)
        done.append(Fired(step.id, step.incident_id, step.action, step.status, step.reason))
    instead = batch.finish()
    done = [replace(f, reason=instead.get(f.step_id, f.reason)) for f in done]
    repo.settle_steps(session, [(f.step_id, f.status, f.reason) for f in done], now=now)
    return done


def _mark(step: EscalationStep, status: StepStatus, reason: str, now: datetime) -> None:
    """Settle ``step`` in the session only: ``repo.settle_steps`` writes the tick's steps
    in one statement, so the ORM must not write each of them again."""
    set_committed_value(step, "status", status)
    set_committed_value(step, "reason", reason)
    set_committed_value(step, "settled_at", now)


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
