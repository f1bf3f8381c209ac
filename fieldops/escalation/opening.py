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
from fieldops.escalation.policy import Policy
from fieldops.escalation.service import StepRows, replan
from fieldops.incidents.models import Incident


@dataclass(frozen=True)
class Opened:
    incident: Incident  # it has its id (given, perhaps not yet written)
    now: datetime
    around: Sequence[Emergency]  # the active emergencies holding it


def plan_opened(
    session: Session,
    opened: Sequence[Opened],
    *,
    policy: Policy | None,
    rows: StepRows | None = None,
) -> None:
    """Set the deadlines of freshly opened incidents and add their planned steps to the
    session (the caller flushes once for all of them), or to ``rows`` when given (the
    caller writes them). Nothing happens without a policy."""
    for item in opened:
        replan(
            session,
            item.incident,
            now=item.now,
            policy=policy,
            current=None,
            steps=(),
            around=item.around,
            rows=rows,
        )
